"""Result types shared by all landmark detectors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NoFaceError", "FaceLandmarks", "five_points_from_68", "box_from_points", "iou"]


class NoFaceError(ValueError):
    """No face was found where one was required."""


def five_points_from_68(landmarks68: np.ndarray) -> np.ndarray:
    """(5, 2): left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner (image left/right)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {lm.shape}")
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def box_from_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return np.concatenate([pts.min(0), pts.max(0)])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_boxes(boxes: list[np.ndarray], candidates: list[np.ndarray], min_iou: float) -> list[int | None]:
    """Greedy one-to-one matching, in the order of ``boxes``: for each box the index of the not yet matched candidate
    box it overlaps most, when that IoU is above ``min_iou``; None where there is none."""
    matches: list[int | None] = []
    used: set[int] = set()
    for box in boxes:
        best, best_iou = None, min_iou
        for j, candidate in enumerate(candidates):
            overlap = iou(box, candidate)
            if j not in used and overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            used.add(best)
        matches.append(best)
    return matches


@dataclass
class FaceLandmarks:
    box: np.ndarray  # (4,) x0, y0, x1, y1 in photo pixels (extent of the 68 landmarks: jaw, brows, chin)
    landmarks68: np.ndarray  # (68, 2) iBUG order, photo pixels
    score: float  # detector confidence in [0, 1]
    detector: str  # "mediapipe" | "dlib" | "face_alignment": who produced landmarks68
    dense: np.ndarray | None = None  # (478, 2) mediapipe mesh points when available
    # (478,) mediapipe's per-point depth relative to the face, photo pixels on the scale of x (smaller is nearer)
    dense_depth: np.ndarray | None = None

    def five_points(self) -> np.ndarray:
        return five_points_from_68(self.landmarks68)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def interocular(self) -> float:
        """Distance between the outer eye corners (points 36 and 45), the usual NME normaliser."""
        return float(np.linalg.norm(self.landmarks68[45] - self.landmarks68[36]))

    def scaled(self, sx: float, sy: float | None = None) -> FaceLandmarks:
        """Copy for the image resized by (sx, sy): x' = x * sx (continuous coordinates, see msma.pixels); depth is
        scaled by sqrt(sx * sy) (by s for the usual uniform resize)."""
        sy = sx if sy is None else sy
        s = np.array([sx, sy])

        def f(p: np.ndarray | None) -> np.ndarray | None:
            return None if p is None else np.asarray(p, np.float64) * s

        box = self.box.reshape(2, 2) * s
        depth = None if self.dense_depth is None else np.asarray(self.dense_depth, np.float64) * float(np.sqrt(sx * sy))
        return FaceLandmarks(box.reshape(4), f(self.landmarks68), self.score, self.detector, f(self.dense), depth)
