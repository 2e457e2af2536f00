"""The annotation store: one thread-safe handle on the SQLite file (connections, transactions), projects, images and
face annotations with optimistic revisions; users, workflow and statistics come from the mixins beside it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annotate.skeleton import OUTSIDE
from annotate.store.records import (
    STATUSES,
    Annotation,
    ConflictError,
    HistoryRow,
    ImageRecord,
    NotFound,
    PermissionDenied,
    Project,
    ValidationError,
    _decode,
    _encode,
    validate_points,
)
from annotate.store.schema import _SCHEMA, SCHEMA_VERSION, resolve_store_path
from annotate.store.stats import StatsMixin
from annotate.store.users import UsersMixin
from annotate.store.workflow import WorkflowMixin


class Store(UsersMixin, WorkflowMixin, StatsMixin):
    """Thread-safe handle on one annotation database (one SQLite connection per thread).

    ``enforce_roles``: when True every write checks the acting user's role (anonymous writes refused);
    None (default) turns it on as soon as the users table is non-empty. The CLI, a trusted local tool, passes False.
    """

    def __init__(self, path: str | os.PathLike, *, create: bool = False, enforce_roles: bool | None = None,
                 timeout: float = 30.0):
        self.db_path = resolve_store_path(path).resolve()
        self.root = self.db_path.parent
        if not self.db_path.exists() and not create:
            raise FileNotFoundError(f"no annotation store at {self.db_path}; run `python -m annotate init {self.root}`")
        self.root.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._enforce = enforce_roles
        self._local = threading.local()
        self._fault_hook = None  # tests: called inside the save transaction to simulate a crash
        with self._tx() as conn:
            for stmt in _SCHEMA.strip().split(";\n"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # ---------------------------------------------------------------- connections and transactions
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=self.timeout, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls (on the same thread) become savepoints of the outer one."""
        conn = self._conn()
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        begin, commit, rollback = (("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)) if depth == 0 else
                                   (f"SAVEPOINT sp{depth}", f"RELEASE sp{depth}",
                                    (f"ROLLBACK TO sp{depth}", f"RELEASE sp{depth}")))
        try:
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                for stmt in rollback:
                    conn.execute(stmt)
                raise
            conn.execute(commit)
        finally:
            self._local.depth = depth

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Group several writes (e.g. an image and its labels) into one transaction: all of them or none."""
        return self._tx()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def integrity_check(self) -> str:
        return self._conn().execute("PRAGMA integrity_check").fetchone()[0]

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    # ---------------------------------------------------------------- projects
    def create_project(self, name: str, description: str = "", user: str | None = None) -> Project:
        self.require(user, "admin")
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO projects(name, description, created_at, created_by) VALUES (?,?,?,?)",
                (name, description, time.time(), user),
            )
        return self.get_project(name)

    def get_project(self, name: str | int | None = None) -> Project:
        conn = self._conn()
        if name is None:
            rows = conn.execute("SELECT * FROM projects ORDER BY id").fetchall()
            if len(rows) != 1:
                raise NotFound(
                    "no project yet; run `python -m annotate init`" if not rows
                    else f"several projects ({', '.join(r['name'] for r in rows)}): pass --project"
                )
            row = rows[0]
        elif isinstance(name, int):
            row = conn.execute("SELECT * FROM projects WHERE id=?", (name,)).fetchone()
        else:
            row = conn.execute("SELECT * FROM projects WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no project {name!r}")
        return Project(row["id"], row["name"], row["description"], row["created_at"])

    def list_projects(self) -> list[Project]:
        rows = self._conn().execute("SELECT * FROM projects ORDER BY id").fetchall()
        return [Project(r["id"], r["name"], r["description"], r["created_at"]) for r in rows]

    # ---------------------------------------------------------------- images
    def add_image(self, project: Project | str | int | None, *, sha256: str, path: str, name: str, width: int,
                  height: int, nbytes: int, split: str = "train", user: str | None = None) -> tuple[int, bool]:
        """Insert an image; returns (image_id, created). An image with the same content hash is not added twice."""
        self.require(user, "admin")
        from annotate.formats import check_split

        if check_split(split):
            raise ValidationError(f"split {check_split(split)}")
        pid = self._project_id(project)
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM images WHERE project_id=? AND sha256=?", (pid, sha256)).fetchone()
            if row is not None:
                return row["id"], False
            cur = conn.execute(
                "INSERT INTO images(project_id, sha256, path, name, width, height, bytes, split, added_at, added_by) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (pid, sha256, path, name, int(width), int(height), int(nbytes), split, time.time(), user),
            )
            return cur.lastrowid, True

    def _project_id(self, project: Project | str | int | None) -> int:
        if isinstance(project, Project):
            return project.id
        return self.get_project(project).id

    def _image_from_row(self, r: sqlite3.Row) -> ImageRecord:
        return ImageRecord(r["id"], r["project_id"], r["sha256"], r["path"], r["name"], r["width"], r["height"],
                           r["bytes"], r["split"], r["status"], r["status_by"], r["comment"], r["assignee"],
                           r["confidence"])

    def get_image(self, image_id: int) -> ImageRecord:
        row = self._conn().execute("SELECT * FROM images WHERE id=?", (int(image_id),)).fetchone()
        if row is None:
            raise NotFound(f"no image {image_id}")
        return self._image_from_row(row)

    def find_image(self, project: Project | str | int | None, sha256: str) -> ImageRecord | None:
        row = self._conn().execute("SELECT * FROM images WHERE project_id=? AND sha256=?",
                                   (self._project_id(project), sha256)).fetchone()
        return None if row is None else self._image_from_row(row)

    def image_path(self, image: ImageRecord) -> Path:
        p = Path(image.path)
        return p if p.is_absolute() else self.root / p

    def list_images(self, project: Project | str | int | None = None, *, statuses: Sequence[str] | None = None,
                    order: str = "queue", split: str | None = None) -> list[ImageRecord]:
        """order: 'queue' (rejected first, then lowest pre-label confidence first), 'name' or 'id'."""
        sql = "SELECT * FROM images WHERE project_id=?"
        args: list[Any] = [self._project_id(project)]
        if statuses:
            bad = set(statuses) - set(STATUSES)
            if bad:
                raise ValidationError(f"unknown status {sorted(bad)}; use {STATUSES}")
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        if split:
            sql += " AND split=?"
            args.append(split)
        sql += {
            "queue": " ORDER BY status!='rejected', confidence IS NULL, confidence, id",
            "name": " ORDER BY name, id",
            "id": " ORDER BY id",
        }[order]
        return [self._image_from_row(r) for r in self._conn().execute(sql, args)]

    def set_confidence(self, image_id: int, confidence: float | None) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE images SET confidence=? WHERE id=?", (confidence, int(image_id)))

    # ---------------------------------------------------------------- annotations
    def _ann_from_row(self, r: sqlite3.Row) -> Annotation:
        points, vis, box, meta = _decode(r["data"])
        return Annotation(r["image_id"], r["face"], r["revision"], points, vis, box, r["source"], r["confidence"],
                          r["updated_by"], r["updated_at"], bool(r["deleted"]), meta)

    def get_annotations(self, image_id: int, *, include_deleted: bool = False) -> list[Annotation]:
        sql = "SELECT * FROM annotations WHERE image_id=?" + ("" if include_deleted else " AND deleted=0")
        rows = self._conn().execute(sql + " ORDER BY face", (int(image_id),)).fetchall()
        return [self._ann_from_row(r) for r in rows]

    def get_annotation(self, image_id: int, face: int = 0) -> Annotation | None:
        row = self._conn().execute("SELECT * FROM annotations WHERE image_id=? AND face=?",
                                   (int(image_id), int(face))).fetchone()
        return None if row is None else self._ann_from_row(row)

    def revisions(self, image_id: int) -> dict[int, int]:
        rows = self._conn().execute("SELECT face, revision FROM annotations WHERE image_id=?", (int(image_id),))
        return {r["face"]: r["revision"] for r in rows}

    def save(self, image_id: int, points: Any, visibility: Any = None, *, base_revision: int, user: str | None,
             face: int = 0, box: Any = None, source: str = "manual", confidence: float | None = None,
             meta: dict | None = None, deleted: bool = False) -> Annotation:
        """Store a new revision of one face. ``base_revision`` is the revision the edit started from (0: new face).

        Raises ConflictError if the stored revision is not ``base_revision`` (nothing is written then),
        ValidationError for bad points, PermissionDenied when the user may not label.
        """
        is_model = bool(user) and str(user).startswith("model:")
        if not is_model:
            self.require(user, "label")
        image = self.get_image(image_id)
        pts, vis = validate_points(points, visibility, image.width, image.height)
        box_arr = None if box is None else np.asarray(box, dtype=np.float64).reshape(4)
        if box_arr is None:
            labelled = vis != OUTSIDE
            if labelled.any():
                p = pts[labelled]
                box_arr = np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])
        data = _encode(pts, vis, box_arr, meta)
        now = time.time()
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM annotations WHERE image_id=? AND face=?",
                               (image.id, int(face))).fetchone()
            current = 0 if row is None else row["revision"]
            if current != int(base_revision):
                raise ConflictError(image.id, int(face), int(base_revision),
                                    None if row is None else self._ann_from_row(row))
            status = conn.execute("SELECT status FROM images WHERE id=?", (image.id,)).fetchone()["status"]
            if status == "approved" and not is_model and not self.can(user, "review"):
                raise PermissionDenied("this image is approved; a reviewer must reopen it before it can be edited")
            revision = current + 1
            conn.execute(
                "INSERT INTO history(image_id, face, revision, deleted, data, source, confidence, user, created_at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (image.id, int(face), revision, int(deleted), data, source, confidence, user, now),
            )
            if self._fault_hook is not None:
                self._fault_hook()
            conn.execute(
                "INSERT INTO annotations(image_id, face, revision, deleted, data, source, confidence, updated_by, "
                "updated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(image_id, face) DO UPDATE SET "
                "revision=excluded.revision, deleted=excluded.deleted, data=excluded.data, source=excluded.source, "
                "confidence=excluded.confidence, updated_by=excluded.updated_by, updated_at=excluded.updated_at",
                (image.id, int(face), revision, int(deleted), data, source, confidence, user, now),
            )
            if source == "manual" and not is_model and status in ("todo", "rejected"):
                self._set_status(conn, image.id, status, "in_progress", user, None, now)
                conn.execute("UPDATE images SET assignee=? WHERE id=?", (user, image.id))
        return Annotation(image.id, int(face), revision, pts, vis, box_arr, source, confidence, user, now,
                          deleted, meta or {})

    def delete_face(self, image_id: int, face: int, *, base_revision: int, user: str | None) -> Annotation:
        """Mark a face (e.g. a false detection) deleted: a new revision with deleted=1; history keeps the points."""
        ann = self.get_annotation(image_id, face)
        if ann is None:
            raise NotFound(f"image {image_id} has no face {face}")
        return self.save(image_id, ann.points, ann.visibility, base_revision=base_revision, user=user, face=face,
                         box=ann.box, source="delete", deleted=True)

    def history(self, image_id: int, face: int | None = None) -> list[HistoryRow]:
        sql = "SELECT * FROM history WHERE image_id=?"
        args: list[Any] = [int(image_id)]
        if face is not None:
            sql += " AND face=?"
            args.append(int(face))
        out = []
        for r in self._conn().execute(sql + " ORDER BY face, revision", args):
            points, vis, box, meta = _decode(r["data"])
            out.append(HistoryRow(r["image_id"], r["face"], r["revision"], points, vis, box, r["source"],
                                  r["confidence"], r["user"], r["created_at"], bool(r["deleted"]), meta))
        return out

    def next_face_index(self, image_id: int) -> int:
        row = self._conn().execute("SELECT MAX(face) AS m FROM annotations WHERE image_id=?",
                                   (int(image_id),)).fetchone()
        return 0 if row["m"] is None else row["m"] + 1
