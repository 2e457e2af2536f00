"""What the annotation store holds, as Python objects: statuses and roles, errors, projects, images, annotations,
history rows; the JSON encoding of a face's points and their validation."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotate.skeleton import N_POINTS, OUTSIDE, VISIBILITY_CODES, VISIBLE

STATUSES = ("todo", "in_progress", "done", "needs_review", "approved", "rejected")
ROLES = ("labeler", "reviewer", "admin")
LABELER_STATUSES = {"todo", "in_progress", "done", "needs_review"}
REVIEW_STATUSES = {"approved", "rejected"}
DONE_STATUSES = ("done", "approved")


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
