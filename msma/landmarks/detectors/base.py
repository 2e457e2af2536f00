"""What a landmark detector plug-in is: the :class:`Detector` interface, and the plumbing every plug-in shares
(model cache and lock, native-log silencing, downscaled copies, square crops, duplicate removal)."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from msma.landmarks.base import FaceLandmarks, iou
from msma.pixels import opencv_affine

__all__ = ["DETECT_MAX_SIDE", "Detector", "apply_affine", "cached", "clear_model_cache", "dedupe", "detector_lock",
           "downscaled", "native_stderr_silenced", "square_crop"]

# Detectors look for faces on a copy no larger than this; points are then refined on the full photo.
DETECT_MAX_SIDE = 1280

detector_lock = threading.RLock()  # the native models are not thread-safe: one call at a time, process-wide
_cache: dict[str, Any] = {}


class Detector(ABC):
    """One landmark detector. Images are validated uint8 RGB (H, W, 3); points and boxes are photo pixels
    (continuous coordinates, ``msma.pixels``)."""

    name: str

    @abstractmethod
    def available(self) -> bool:
        """Usable here without downloading anything."""

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        """Every face in the photo, largest first; [] when none."""

    @abstractmethod
    def in_box(self, image: np.ndarray, box: np.ndarray) -> FaceLandmarks | None:
        """Landmarks of the face known to be in ``box`` (x0, y0, x1, y1), no face detection; None when the
        landmark model finds no face there."""


def clear_model_cache() -> None:
    with detector_lock:
        for obj in _cache.values():
            close = getattr(obj, "close", None)
            if callable(close):
                close()
        _cache.clear()


def cached(key: str, factory: Callable[[], Any]) -> Any:
    """The model ``key``, built by ``factory`` on first use and kept for the process."""
    with detector_lock:
        if key not in _cache:
            _cache[key] = factory()
        return _cache[key]


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block. mediapipe's TFLite / absl C++ code prints INFO and
    WARNING lines ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ...") straight to the
    process's stderr when a graph is built and first run, which neither GLOG_minloglevel nor Python's warnings
    reach. Used only while a model is created and warmed up (once per process, under the detector lock)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Copy no larger than max_side and the factor s so that photo = small / s (continuous coordinates)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    import cv2

    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, size[0] / w


def square_crop(image: np.ndarray, cx: float, cy: float, side: float, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Square crop centred at (cx, cy), resized to out x out; returns it and the (2, 3) crop -> photo matrix."""
    import cv2

    s = out / side
    m = np.array([[s, 0.0, out / 2 - s * cx], [0.0, s, out / 2 - s * cy]])  # continuous coordinates (msma.pixels)
    src, warp = image, m
    if s < 0.7:
        # warpAffine does not low-pass filter: shrink the covered region with INTER_AREA first, then warp from it.
        h, w = image.shape[:2]
        x0, y0 = max(0, int(cx - side / 2) - 2), max(0, int(cy - side / 2) - 2)
        x1, y1 = min(w, int(math.ceil(cx + side / 2)) + 3), min(h, int(math.ceil(cy + side / 2)) + 3)
        if x1 > x0 and y1 > y0:
            sub = image[y0:y1, x0:x1]
            size = (max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))
            src = cv2.resize(sub, size, interpolation=cv2.INTER_AREA)
            # sub-image point u maps to photo x = x0 + u / r with r = size / (x1 - x0)
            rx, ry = size[0] / (x1 - x0), size[1] / (y1 - y0)
            to_photo = np.array([[1 / rx, 0.0, x0], [0.0, 1 / ry, y0]])
            warp = np.vstack([m, [0, 0, 1]]) @ np.vstack([to_photo, [0, 0, 1]])
            warp = warp[:2]
    crop = cv2.warpAffine(np.ascontiguousarray(src), opencv_affine(warp), (out, out), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    inv = np.array([[1 / s, 0.0, -m[0, 2] / s], [0.0, 1 / s, -m[1, 2] / s]])
    return crop, inv


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def nms(boxes: list[np.ndarray], scores: list[float], thr: float) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


def dedupe(faces: list[FaceLandmarks]) -> list[FaceLandmarks]:
    """Best-scored face of each overlapping group (box IoU > 0.5), largest first."""
    faces = sorted(faces, key=lambda f: -f.score)
    keep: list[FaceLandmarks] = []
    for f in faces:
        if all(iou(f.box, k.box) <= 0.5 for k in keep):
            keep.append(f)
    return sorted(keep, key=lambda f: -f.area)
