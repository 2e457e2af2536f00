"""mediapipe plug-in: BlazeFace boxes (short- and full-range models, plus tiles for small faces), then the 478-point
face mesh on an upscaled crop of each; the 68 iBUG points come from the mesh (``msma.landmarks.mapping``).

Besides x, y the mesh gives every point a depth relative to the face (mediapipe's z: same scale as x, smaller is
nearer the camera); it is kept as ``FaceLandmarks.dense_depth`` in photo pixels.
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from typing import Any

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points
from msma.landmarks.detectors.base import (
    DETECT_MAX_SIDE,
    Detector,
    apply_affine,
    cached,
    dedupe,
    detector_lock,
    downscaled,
    native_stderr_silenced,
    nms,
    square_crop,
)
from msma.landmarks.mapping import mesh_to_68

MESH_CROP_SIZE = 256  # face mesh input crop (its own network runs at 192/256 px)
MESH_CROP_FACTOR = 2.0  # crop side / detection box side


def _solutions() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")  # silence mediapipe's C++ INFO/WARNING logging
    import mediapipe as mp

    return mp.solutions


def _warmed_up(model: Any) -> Any:
    """A mediapipe solution, built and run once on a blank image with its native start-up logging silenced."""
    with native_stderr_silenced():
        model.process(np.zeros((64, 64, 3), np.uint8))
    return model


def _face_detector(model_selection: int) -> Any:
    def build() -> Any:
        with native_stderr_silenced():
            model = _solutions().face_detection.FaceDetection(model_selection=model_selection,
                                                              min_detection_confidence=0.5)
        return _warmed_up(model)

    return cached(f"mp_det{model_selection}", build)


def _face_mesh() -> Any:
    def build() -> Any:
        with native_stderr_silenced():
            model = _solutions().face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=3, refine_landmarks=True, min_detection_confidence=0.3)
        return _warmed_up(model)

    return cached("mp_mesh", build)


def detect_boxes(image: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Face boxes (x0, y0, x1, y1) in `image` pixels with scores, from both mediapipe detectors plus tiles."""
    h, w = image.shape[:2]
    boxes: list[np.ndarray] = []
    scores: list[float] = []

    def run(model: int, x0: int, y0: int, tile: np.ndarray) -> None:
        th, tw = tile.shape[:2]
        with detector_lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # protobuf deprecation noise from mediapipe
            res = _face_detector(model).process(tile)
        for det in res.detections or []:
            rb = det.location_data.relative_bounding_box
            b = np.array([rb.xmin * tw + x0, rb.ymin * th + y0, (rb.xmin + rb.width) * tw + x0,
                          (rb.ymin + rb.height) * th + y0])
            if b[2] - b[0] < 4 or b[3] - b[1] < 4:
                continue
            boxes.append(b)
            scores.append(float(det.score[0]))

    # Short-range (model 0) is best for faces filling much of the frame, full-range (model 1) for faces down to ~1/20
    # of the frame; overlapping tiles recover faces that are small relative to the whole (group photos).
    run(0, 0, 0, image)
    run(1, 0, 0, image)
    tile = 640
    if max(h, w) > tile * 1.25:
        stride = tile * 3 // 4
        for y0 in range(0, max(1, h - tile // 4), stride):
            for x0 in range(0, max(1, w - tile // 4), stride):
                t = image[y0:y0 + tile, x0:x0 + tile]
                if min(t.shape[:2]) >= 64:
                    run(1, x0, y0, np.ascontiguousarray(t))
    keep = nms(boxes, scores, 0.4)
    return [(boxes[i], scores[i]) for i in keep]


def mesh_in_box(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """478-point mesh of the face in `box`, run on an upscaled crop around it: (points (478, 2), depth (478,)), both
    photo pixels (depth: mediapipe's z x crop size, times the crop -> photo scale, exactly as x); None when the mesh
    finds no face there."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = MESH_CROP_FACTOR * max(box[2] - box[0], box[3] - box[1])
    crop, inv = square_crop(image, cx, cy, side, MESH_CROP_SIZE)
    with detector_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = _face_mesh().process(crop)
    if not res.multi_face_landmarks:
        return None
    best, best_d = None, math.inf
    for face in res.multi_face_landmarks:
        pts = np.array([(p.x * MESH_CROP_SIZE, p.y * MESH_CROP_SIZE, p.z * MESH_CROP_SIZE) for p in face.landmark])
        d = float(np.linalg.norm(pts[:, :2].mean(0) - MESH_CROP_SIZE / 2))
        if d < best_d:
            best, best_d = pts, d
    assert best is not None
    if best_d > MESH_CROP_SIZE / (2 * MESH_CROP_FACTOR):  # the mesh landed on a neighbouring face
        return None
    return apply_affine(inv, best[:, :2]), best[:, 2] * inv[0, 0]


class MediapipeDetector(Detector):
    name = "mediapipe"

    def available(self) -> bool:
        return importlib.util.find_spec("mediapipe") is not None

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        small, s = downscaled(image, DETECT_MAX_SIDE)
        faces = []
        for box, score in detect_boxes(small):
            face = self._from_box(image, np.asarray(box, np.float64) / s, score)
            if face is not None:
                faces.append(face)
        return dedupe(faces)

    def in_box(self, image: np.ndarray, box: np.ndarray) -> FaceLandmarks | None:
        return self._from_box(image, np.asarray(box, np.float64), 1.0)

    @staticmethod
    def _from_box(image: np.ndarray, box: np.ndarray, score: float) -> FaceLandmarks | None:
        mesh = mesh_in_box(image, box)
        if mesh is None:
            return None
        dense, depth = mesh
        lm = mesh_to_68(dense)
        return FaceLandmarks(box_from_points(lm), lm, score, "mediapipe", dense, dense_depth=depth)
