"""Face detection and 68-point iBUG landmarks: detector plug-ins (``detectors/``: mediapipe, dlib, face-alignment).

    from msma.landmarks import detect_faces
    faces = detect_faces(image)           # largest first, [] when none
    faces[0].landmarks68, faces[0].five_points()
"""

from __future__ import annotations

from msma.landmarks.base import FaceLandmarks, NoFaceError, five_points_from_68
from msma.landmarks.detect import available_detectors, clear_model_cache, detect_faces
from msma.landmarks.mapping import MEDIAPIPE_TO_IBUG68, mesh_to_68

__all__ = [
    "FaceLandmarks",
    "MEDIAPIPE_TO_IBUG68",
    "NoFaceError",
    "available_detectors",
    "clear_model_cache",
    "detect_faces",
    "five_points_from_68",
    "mesh_to_68",
]
