"""SQLite store for annotation projects: images, 68-point annotations with full history, tasks, users.

One file (``annotate.sqlite``) in a project folder; WAL journal; every write is one ``BEGIN IMMEDIATE`` transaction,
so a process killed mid-save leaves either the old or the new state, never a mix.

Concurrency is optimistic: each face annotation carries a ``revision``; ``save(..., base_revision=r)`` succeeds
only when the stored revision is still ``r`` and then stores ``r + 1``; otherwise it raises :class:`ConflictError`
carrying the stored version, so the UI can show who saved in between and offer a reload. Every save also appends a
history row; nothing is overwritten silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotate.login import MIN_PASSWORD_LENGTH
from annotate.skeleton import N_POINTS, OUTSIDE, VISIBILITY_CODES, VISIBLE

DB_NAME = "annotate.sqlite"
SCHEMA_VERSION = 1

STATUSES = ("todo", "in_progress", "done", "needs_review", "approved", "rejected")
ROLES = ("labeler", "reviewer", "admin")
LABELER_STATUSES = {"todo", "in_progress", "done", "needs_review"}
REVIEW_STATUSES = {"approved", "rejected"}
DONE_STATUSES = ("done", "approved")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, description TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, created_by TEXT);
CREATE TABLE IF NOT EXISTS images(
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL, path TEXT NOT NULL, name TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, bytes INTEGER NOT NULL,
    split TEXT NOT NULL DEFAULT 'train',
    status TEXT NOT NULL DEFAULT 'todo'
        CHECK(status IN ('todo','in_progress','done','needs_review','approved','rejected')),
    status_by TEXT, status_at REAL, comment TEXT, assignee TEXT,
    confidence REAL, added_at REAL NOT NULL, added_by TEXT,
    UNIQUE(project_id, sha256));
CREATE INDEX IF NOT EXISTS images_queue ON images(project_id, status, confidence);
CREATE TABLE IF NOT EXISTS annotations(
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    face INTEGER NOT NULL, revision INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL, source TEXT NOT NULL, confidence REAL,
    updated_by TEXT, updated_at REAL NOT NULL,
    UNIQUE(image_id, face));
CREATE TABLE IF NOT EXISTS history(
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    face INTEGER NOT NULL, revision INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL, source TEXT NOT NULL, confidence REAL,
    user TEXT, created_at REAL NOT NULL,
    UNIQUE(image_id, face, revision));
CREATE INDEX IF NOT EXISTS history_user ON history(user);
CREATE TABLE IF NOT EXISTS task_events(
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    old_status TEXT, status TEXT NOT NULL, comment TEXT, user TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users(
    name TEXT PRIMARY KEY, role TEXT NOT NULL CHECK(role IN ('labeler','reviewer','admin')),
    algo TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL, created_at REAL NOT NULL);
"""


class StoreError(Exception):
    """Base class of store errors."""


class ConflictError(StoreError):
    """Someone else saved this face since the caller loaded it."""

    def __init__(self, image_id: int, face: int, base_revision: int, current: Annotation | None):
        self.image_id, self.face, self.base_revision, self.current = image_id, face, base_revision, current
        if current is None:
            who = "the annotation was removed"
        else:
            when = time.strftime("%H:%M:%S", time.localtime(current.updated_at))
            who = f"{current.updated_by or 'someone'} saved revision {current.revision} at {when}"
        super().__init__(
            f"conflict on image {image_id} face {face}: you edited revision {base_revision} but {who}; "
            "reload to see their version (your edit was not saved)"
        )


class PermissionDenied(StoreError):
    """The user's role does not allow the action (or nobody is logged in while auth is on)."""


class ValidationError(StoreError, ValueError):
    """Bad points / visibility / status."""


class NotFound(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else "not found"


@dataclass
class Project:
    id: int
    name: str
    description: str
    created_at: float


@dataclass
class ImageRecord:
    id: int
    project_id: int
    sha256: str
    path: str  # relative to the store root (or absolute when kept in place)
    name: str  # relative name used in exports
    width: int
    height: int
    bytes: int
    split: str
    status: str
    status_by: str | None
    comment: str | None
    assignee: str | None
    confidence: float | None


@dataclass
class Annotation:
    image_id: int
    face: int
    revision: int
    points: np.ndarray  # (68, 2) float64, NaN where unknown
    visibility: np.ndarray  # (68,) int8: 2 visible, 1 occluded, 0 outside
    box: np.ndarray | None  # (4,) x0, y0, x1, y1
    source: str
    confidence: float | None
    updated_by: str | None
    updated_at: float
    deleted: bool = False
    meta: dict = field(default_factory=dict)


@dataclass
class HistoryRow:
    image_id: int
    face: int
    revision: int
    points: np.ndarray
    visibility: np.ndarray
    box: np.ndarray | None
    source: str
    confidence: float | None
    user: str | None
    created_at: float
    deleted: bool
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------- helpers
def _encode(points: np.ndarray, visibility: np.ndarray, box: np.ndarray | None, meta: dict | None) -> str:
    pts = [[None if not math.isfinite(v) else float(v) for v in p] for p in points.tolist()]
    data = {"points": pts, "visibility": [int(v) for v in visibility.tolist()]}
    data["box"] = None if box is None else [float(v) for v in np.asarray(box, dtype=np.float64).tolist()]
    if meta:
        data["meta"] = meta
    return json.dumps(data, separators=(",", ":"))


def _decode(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    data = json.loads(text)
    points = np.array([[np.nan if v is None else v for v in p] for p in data["points"]], dtype=np.float64)
    visibility = np.asarray(data["visibility"], dtype=np.int8)
    box = None if data.get("box") is None else np.asarray(data["box"], dtype=np.float64)
    return points.reshape(N_POINTS, 2), visibility, box, data.get("meta") or {}


def normalize_visibility(visibility: Any, points: np.ndarray) -> np.ndarray:
    """None -> visible where finite, outside where NaN; strings ('visible'/'occluded'/'outside') or codes 0/1/2."""
    if visibility is None:
        vis = np.where(np.isfinite(points).all(axis=1), VISIBLE, OUTSIDE)
    else:
        values = list(visibility)
        if any(isinstance(v, (bool, np.bool_)) or (isinstance(v, str) and v not in VISIBILITY_CODES) or
               not isinstance(v, (str, int, np.integer)) for v in values):
            raise ValidationError("visibility values must be 0 / 1 / 2 or 'outside' / 'occluded' / 'visible'")
        vis = np.array([VISIBILITY_CODES[v] if isinstance(v, str) else int(v) for v in values], dtype=np.int64)
    if vis.shape != (N_POINTS,) or not np.isin(vis, (0, 1, 2)).all():
        raise ValidationError(f"visibility must be {N_POINTS} values in 0 (outside) / 1 (occluded) / 2 (visible)")
    return vis.astype(np.int8)


def validate_points(points: Any, visibility: Any, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Check shape, finiteness and that every visible/occluded point lies inside the image."""
    raw = np.asarray(points, dtype=object) if not isinstance(points, np.ndarray) else points
    if raw.dtype == bool or (raw.dtype == object and any(isinstance(v, (bool, np.bool_, str, bytes))
                                                         for v in raw.ravel().tolist())):
        raise ValidationError("points must be numbers, not booleans or text")
    try:
        pts = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"points are not numeric: {exc}") from exc
    if pts.shape != (N_POINTS, 2):
        raise ValidationError(f"expected {N_POINTS} points of (x, y), got shape {pts.shape}")
    vis = normalize_visibility(visibility, pts)
    labelled = vis != OUTSIDE
    if not np.isfinite(pts[labelled]).all():
        bad = [int(i) for i in np.nonzero(labelled & ~np.isfinite(pts).all(axis=1))[0]]
        raise ValidationError(f"points {bad} are marked visible/occluded but have no coordinates")
    x, y = pts[:, 0], pts[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    bad = np.nonzero(labelled & ~inside)[0]
    if bad.size:
        i = int(bad[0])
        raise ValidationError(
            f"point {i} at ({x[i]:.1f}, {y[i]:.1f}) is outside the {width}x{height} image "
            f"({bad.size} such point(s)); move it inside or mark it 'outside'"
        )
    return pts, vis


def hash_password(password: str, salt: bytes | None = None, algo: str | None = None) -> tuple[str, bytes, bytes]:
    salt = salt or secrets.token_bytes(16)
    algo = algo or "scrypt"
    if algo == "scrypt":
        try:
            digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
            return algo, salt, digest
        except (ValueError, AttributeError):  # OpenSSL without scrypt
            algo = "pbkdf2_sha256"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)
    return "pbkdf2_sha256", salt, digest


def resolve_store_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix in (".sqlite", ".db", ".sqlite3"):
        return p
    return p / DB_NAME


# ------------------------------------------------------------------------------------------------------------- store
class Store:
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

    # ---------------------------------------------------------------- users and roles
    @property
    def auth_enabled(self) -> bool:
        if self._enforce is not None:
            return self._enforce
        return self._conn().execute("SELECT COUNT(*) FROM users").fetchone()[0] > 0

    def add_user(self, name: str, password: str, role: str = "labeler") -> None:
        if role not in ROLES:
            raise ValidationError(f"role must be one of {ROLES}, got {role!r}")
        name = name.strip()
        if not name or name.startswith("model:"):
            raise ValidationError("user names must be non-empty and not start with 'model:'")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise ValidationError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
        algo, salt, digest = hash_password(password)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO users(name, role, algo, salt, hash, created_at) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET role=excluded.role, algo=excluded.algo, salt=excluded.salt, "
                "hash=excluded.hash",
                (name, role, algo, salt, digest, time.time()),
            )

    def set_role(self, name: str, role: str) -> None:
        if role not in ROLES:
            raise ValidationError(f"role must be one of {ROLES}, got {role!r}")
        with self._tx() as conn:
            if conn.execute("UPDATE users SET role=? WHERE name=?", (role, name)).rowcount == 0:
                raise NotFound(f"no user {name!r}")

    def remove_user(self, name: str) -> None:
        with self._tx() as conn:
            if conn.execute("DELETE FROM users WHERE name=?", (name,)).rowcount == 0:
                raise NotFound(f"no user {name!r}")

    def list_users(self) -> list[tuple[str, str]]:
        return [(r["name"], r["role"]) for r in self._conn().execute("SELECT name, role FROM users ORDER BY name")]

    def authenticate(self, name: str, password: str) -> bool:
        row = self._conn().execute("SELECT algo, salt, hash FROM users WHERE name=?", (name,)).fetchone()
        if row is None:
            hash_password(password)  # same cost either way
            return False
        _algo, _salt, digest = hash_password(password, salt=row["salt"], algo=row["algo"])
        return hmac.compare_digest(digest, row["hash"])

    def role_of(self, name: str | None) -> str | None:
        if not name:
            return None
        row = self._conn().execute("SELECT role FROM users WHERE name=?", (name,)).fetchone()
        return None if row is None else row["role"]

    def can(self, user: str | None, action: str) -> bool:
        """action: 'label' (edit points, labeler statuses), 'review' (approve/reject), 'admin' (import, users)."""
        if not self.auth_enabled:
            return True
        role = self.role_of(user)
        if role is None:
            return False
        need = {"label": 0, "review": 1, "admin": 2}[action]
        return ROLES.index(role) >= need

    def require(self, user: str | None, action: str) -> None:
        if not self.can(user, action):
            if not user or self.role_of(user) is None:
                raise PermissionDenied("log in first: with authentication on, anonymous users cannot change anything")
            raise PermissionDenied(f"user {user!r} ({self.role_of(user)}) may not {action}")

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

    # ---------------------------------------------------------------- tasks
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
