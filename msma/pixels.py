"""The project's one pixel convention, and the conversions at the libraries that use another.

Every 2D point in MSMA (landmarks, projected vertices, boxes, crop matrices) is a **continuous** coordinate: pixel
(row i, column j) covers ``[j, j + 1) x [i, i + 1)`` and its centre is ``(j + 0.5, i + 0.5)``. This is the
renderer's convention (`msma.render`) and mediapipe's (normalised coordinate x image size), and it makes changing
the image size a plain multiplication: a point at ``x`` in one image is at ``x * scale`` in the image resized by
``scale`` (`rescale`).

OpenCV (``warpAffine``, ``remap``, ``resize`` maps, drawing) and dlib (``shape.part(i)``, rectangles) index pixels by
their centres (integer centres): convert with `from_pixel_index` / `to_pixel_index`, and give ``cv2.warpAffine`` the
matrix from `opencv_affine`.
"""

from __future__ import annotations

import numpy as np

PIXEL_CENTRE = 0.5  # continuous coordinate of pixel 0's centre

__all__ = ["PIXEL_CENTRE", "from_pixel_index", "to_pixel_index", "opencv_affine"]


def from_pixel_index(points: np.ndarray) -> np.ndarray:
    """OpenCV / dlib integer-centre coordinates -> MSMA continuous coordinates."""
    return np.asarray(points, np.float64) + PIXEL_CENTRE


def to_pixel_index(points: np.ndarray) -> np.ndarray:
    """MSMA continuous coordinates -> OpenCV / dlib integer-centre coordinates."""
    return np.asarray(points, np.float64) - PIXEL_CENTRE


def opencv_affine(matrix: np.ndarray) -> np.ndarray:
    """A (2, 3) continuous-coordinate affine map as the matrix ``cv2.warpAffine`` expects (integer centres)."""
    m = np.asarray(matrix, np.float64)
    out = m.copy()
    out[:, 2] = m[:, :2] @ np.full(2, PIXEL_CENTRE) + m[:, 2] - PIXEL_CENTRE
    return out
