"""Project statistics of an annotation store: status counts and per-labeler work."""

from __future__ import annotations

from annotate.store.records import DONE_STATUSES, STATUSES, Project


class StatsMixin:
    """Progress and labeler statistics (part of :class:`annotate.store.Store`)."""

    def progress(self, project: Project | str | int | None = None) -> dict[str, int]:
        pid = self._project_id(project)
        counts = dict.fromkeys(STATUSES, 0)
        for r in self._conn().execute("SELECT status, COUNT(*) AS n FROM images WHERE project_id=? GROUP BY status",
                                      (pid,)):
            counts[r["status"]] = r["n"]
        counts["total"] = sum(counts[s] for s in STATUSES)
        counts["finished"] = sum(counts[s] for s in DONE_STATUSES)
        return counts

    def labeler_stats(self, project: Project | str | int | None = None) -> dict[str, dict[str, int]]:
        """Per user: saves, images edited, images they marked done, approvals/rejections of their images."""
        pid = self._project_id(project)
        conn = self._conn()
        stats: dict[str, dict[str, int]] = {}

        def slot(user: str) -> dict[str, int]:
            return stats.setdefault(user, {"saves": 0, "images": 0, "done": 0, "approved": 0, "rejected": 0})

        for r in conn.execute(
            "SELECT h.user, COUNT(*) AS saves, COUNT(DISTINCT h.image_id) AS images FROM history h "
            "JOIN images i ON i.id=h.image_id WHERE i.project_id=? AND h.user IS NOT NULL "
            "AND h.user NOT LIKE 'model:%' AND h.source NOT LIKE 'import%' GROUP BY h.user", (pid,)):
            s = slot(r["user"])
            s["saves"], s["images"] = r["saves"], r["images"]
        # who finished each image: the user of its latest 'done'/'needs_review' event
        for r in conn.execute(
            "SELECT e.user, COUNT(*) AS n FROM task_events e JOIN images i ON i.id=e.image_id "
            "WHERE i.project_id=? AND e.status IN ('done','needs_review') AND e.user IS NOT NULL AND e.id = ("
            "SELECT MAX(id) FROM task_events WHERE image_id=e.image_id AND status IN ('done','needs_review')) "
            "AND i.status IN ('done','needs_review','approved') GROUP BY e.user", (pid,)):
            slot(r["user"])["done"] = r["n"]
        for status in ("approved", "rejected"):
            for r in conn.execute(
                "SELECT e.user AS labeler, COUNT(*) AS n FROM images i JOIN task_events e ON e.image_id=i.id "
                "WHERE i.project_id=? AND i.status=? AND e.user IS NOT NULL AND e.id = (SELECT MAX(id) FROM "
                "task_events WHERE image_id=i.id AND status IN ('done','needs_review','in_progress')) "
                "GROUP BY e.user", (pid, status)):
                slot(r["labeler"])[status] = r["n"]
        return stats
