"""Landmark detectors as plug-ins: one module a detector behind one small interface (:class:`Detector`), and the
registry ``detect_faces`` picks them from by name.

A new detector: subclass :class:`Detector` (``available``, ``detect``, ``in_box``) and :func:`register` an instance.
"""

from __future__ import annotations

from msma.landmarks.detectors.base import Detector, clear_model_cache
from msma.landmarks.detectors.dlib import DlibDetector
from msma.landmarks.detectors.face_alignment import FaceAlignmentDetector
from msma.landmarks.detectors.mediapipe import MediapipeDetector

__all__ = ["REGISTRY", "Detector", "available_detectors", "clear_model_cache", "get_detector", "register"]

REGISTRY: dict[str, Detector] = {}


def register(detector: Detector) -> Detector:
    """Offer ``detector`` under ``detector.name`` (registration order is the order of preference)."""
    REGISTRY[detector.name] = detector
    return detector


def get_detector(name: str) -> Detector:
    """The registered detector ``name``: ValueError when unknown, RuntimeError when not usable here."""
    if name not in REGISTRY:
        raise ValueError(f"unknown detector {name!r}; choose 'auto' or one of {list(REGISTRY)}")
    detector = REGISTRY[name]
    if not detector.available():
        raise RuntimeError(f"detector {name!r} is not available here (available: {available_detectors()})")
    return detector


def available_detectors() -> list[str]:
    """Detectors usable in this environment without downloading anything, best first."""
    return [name for name, detector in REGISTRY.items() if detector.available()]


for _detector in (DlibDetector(), MediapipeDetector(), FaceAlignmentDetector()):
    register(_detector)
