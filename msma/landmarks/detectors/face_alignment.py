"""face-alignment plug-in (2D-FAN with the SFD face detector), offered only when its weights are already in the
torch hub cache: neither tests nor offline users ever trigger a download."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from msma.landmarks.base import FaceLandmarks, box_from_points
from msma.landmarks.detectors.base import DETECT_MAX_SIDE, Detector, cached, dedupe, detector_lock, downscaled
from msma.pixels import from_pixel_index, to_pixel_index


def _torch_hub_checkpoint_dir() -> Path:
    if os.environ.get("TORCH_HOME"):
        hub = Path(os.environ["TORCH_HOME"]) / "hub"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        hub = Path(xdg) / "torch" / "hub"
    return hub / "checkpoints"


def _model() -> Any:
    def load() -> Any:
        import face_alignment

        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        return face_alignment.FaceAlignment(kind, device="cpu", face_detector="sfd", flip_input=False)

    return cached("face_alignment", load)


class FaceAlignmentDetector(Detector):
    name = "face_alignment"

    def available(self) -> bool:
        if importlib.util.find_spec("face_alignment") is None:
            return False
        ckpt = _torch_hub_checkpoint_dir()
        if not ckpt.is_dir():
            return False
        names = [p.name.lower() for p in ckpt.iterdir()]
        has_fan = any(n.startswith("2dfan4") or n.startswith("2dfan-4") for n in names)
        has_sfd = any(n.startswith("s3fd") for n in names)
        return has_fan and has_sfd

    def detect(self, image: np.ndarray) -> list[FaceLandmarks]:
        small, s = downscaled(image, DETECT_MAX_SIDE)
        with detector_lock:
            result = _model().get_landmarks_from_image(small, return_landmark_score=True, return_bboxes=True)
        preds, lscores, _ = result if isinstance(result, tuple) else (result, None, None)
        faces = []
        for i, lm in enumerate(preds or []):
            lm = from_pixel_index(np.asarray(lm)[:, :2]) / s
            score = float(np.mean(lscores[i])) if lscores is not None else 1.0
            faces.append(FaceLandmarks(box_from_points(lm), lm, float(np.clip(score, 0, 1)), "face_alignment"))
        return dedupe(faces)

    def in_box(self, image: np.ndarray, box: np.ndarray) -> FaceLandmarks | None:
        corners = to_pixel_index(np.asarray(box, np.float64).reshape(2, 2)).reshape(4)
        with detector_lock:
            preds = _model().get_landmarks_from_image(image, detected_faces=[corners])
        if not preds:
            return None
        lm = from_pixel_index(np.asarray(preds[0])[:, :2])
        return FaceLandmarks(box_from_points(lm), lm, 1.0, "face_alignment")
