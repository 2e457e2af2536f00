"""Flip test-time augmentation of the landmark detectors: detect on the photo and on its mirror image, then average
each face's points with the mirrored points of the same face in the flipped photo.

The detectors are not exactly mirror-equivariant, so the two answers differ by part of their error; averaging keeps
what they agree on. Points are mapped back with x -> width - x (continuous coordinates, `msma.pixels`) and every
point's left/right partner: iBUG's (`msma.landmarks.mapping.IBUG68_MIRROR`) for the 68 points, the face mesh's
(`msma/data/mediapipe_mirror.npz`, scripts/derive_landmark_mirror.py) for its 478 points.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points, match_boxes
from msma.landmarks.mapping import IBUG68_MIRROR

__all__ = ["MESH_MIRROR", "flip_averaged", "mirror_boxes", "mirror_face"]

MESH_MIRROR: np.ndarray = np.load(Path(__file__).resolve().parents[1] / "data" / "mediapipe_mirror.npz")["mirror"]
MATCH_IOU = 0.5  # the flipped photo's detection of the same face overlaps it at least this much


def _mirror_points(points: np.ndarray | None, partner: np.ndarray, width: float) -> np.ndarray | None:
    if points is None:
        return None
    out = np.array(points, np.float64)[partner]
    out[:, 0] = width - out[:, 0]
    return out


def mirror_boxes(boxes, width: float) -> np.ndarray:
    """(K, 4) x0, y0, x1, y1 boxes of a ``width`` px wide photo as boxes of its horizontally flipped image."""
    out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = width - out[:, [2, 0]]
    return out


def mirror_face(face: FaceLandmarks, width: float) -> FaceLandmarks:
    """A detection made on the horizontally flipped photo (``width`` px wide) as a detection of the original photo."""
    box = mirror_boxes(face.box, width)[0]
    depth = None if face.dense_depth is None else np.asarray(face.dense_depth, np.float64)[MESH_MIRROR]
    return FaceLandmarks(box, _mirror_points(face.landmarks68, IBUG68_MIRROR, width), face.score, face.detector,
                         _mirror_points(face.dense, MESH_MIRROR, width), depth)


def flip_averaged(image: np.ndarray, faces: list[FaceLandmarks],
                  detect: Callable[[np.ndarray], list[FaceLandmarks]]) -> list[FaceLandmarks]:
    """``faces`` found in ``image`` with each one's points averaged with its detection in the flipped photo
    (``detect`` runs the same detector); a face the flipped pass misses, or gives to another detector, is kept as
    it is (the mesh points are still averaged when both passes have them)."""
    width = image.shape[1]
    mirrored = [mirror_face(f, width) for f in detect(np.ascontiguousarray(image[:, ::-1]))]
    out = []
    for face, best in zip(faces, match_boxes([f.box for f in faces], [m.box for m in mirrored], MATCH_IOU)):
        if best is None:
            out.append(face)
            continue
        other = mirrored[best]
        landmarks = face.landmarks68
        if other.detector == face.detector:
            landmarks = 0.5 * (np.asarray(face.landmarks68, np.float64) + other.landmarks68)
        dense, depth = face.dense, face.dense_depth
        if face.dense is not None and other.dense is not None:
            dense = 0.5 * (np.asarray(face.dense, np.float64) + other.dense)
            if face.dense_depth is not None and other.dense_depth is not None:
                depth = 0.5 * (np.asarray(face.dense_depth, np.float64) + other.dense_depth)
        out.append(FaceLandmarks(box_from_points(landmarks), landmarks, face.score, face.detector, dense, depth))
    return out
