"""Task workflow of an annotation store: each image's status (todo -> in_progress -> done / needs_review ->
approved / rejected), who may set which, and the event log."""

from __future__ import annotations

import sqlite3
import time

from annotate.store.records import REVIEW_STATUSES, STATUSES, NotFound, PermissionDenied, ValidationError


class WorkflowMixin:
    """Image statuses and their events (part of :class:`annotate.store.Store`)."""

    def _set_status(self, conn: sqlite3.Connection, image_id: int, old: str, new: str, user: str | None,
                    comment: str | None, now: float) -> None:
        conn.execute("UPDATE images SET status=?, status_by=?, status_at=?, comment=? WHERE id=?",
                     (new, user, now, comment, image_id))
        conn.execute("INSERT INTO task_events(image_id, old_status, status, comment, user, created_at) "
                     "VALUES (?,?,?,?,?,?)", (image_id, old, new, comment, user, now))

    def set_status(self, image_id: int, status: str, *, user: str | None, comment: str | None = None) -> None:
        """Labelers: todo / in_progress / done / needs_review; reviewers also approved / rejected (with a comment)."""
        if status not in STATUSES:
            raise ValidationError(f"unknown status {status!r}; use one of {STATUSES}")
        if status in REVIEW_STATUSES:
            self.require(user, "review")
            if status == "rejected" and not (comment or "").strip():
                raise ValidationError("a rejection needs a comment telling the labeler what to fix")
        else:
            self.require(user, "label")
        with self._tx() as conn:
            row = conn.execute("SELECT status FROM images WHERE id=?", (int(image_id),)).fetchone()
            if row is None:
                raise NotFound(f"no image {image_id}")
            if row["status"] == "approved" and status != "approved" and not self.can(user, "review"):
                raise PermissionDenied("only a reviewer can reopen an approved image")
            self._set_status(conn, int(image_id), row["status"], status, user, comment, time.time())

    def task_events(self, image_id: int) -> list[dict]:
        rows = self._conn().execute("SELECT * FROM task_events WHERE image_id=? ORDER BY id", (int(image_id),))
        return [dict(r) for r in rows]
