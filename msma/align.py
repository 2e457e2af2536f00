"""5-point alignment of a face to a square crop (Deep3DFaceRecon style) with an exact inverse.

By default only scale and translation are estimated (``rotate=False``), as Deep3DFaceRecon does: the network then
sees the in-plane roll and predicts it as part of the pose. ``rotate=True`` fits a full similarity transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from msma.pixels import opencv_affine

if TYPE_CHECKING:
    from msma.landmarks import FaceLandmarks

__all__ = ["AlignedFace", "align_face", "estimate_transform", "transform_points", "invert_affine",
           "crop_mesh_points", "stack_mesh_points"]


@dataclass
class AlignedFace:
    image: np.ndarray  # (size, size, 3) uint8 crop
    matrix: np.ndarray  # (2, 3) photo -> crop
    inverse: np.ndarray  # (2, 3) crop -> photo


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def crop_mesh_points(detection: FaceLandmarks, matrix: np.ndarray) -> np.ndarray | None:
    """(N, 3) a detection's mesh points in the crop of ``matrix``: x, y, and mediapipe's relative depth (on the scale
    of x, so times the similarity's scale; NaN when the detector gave none). None when it has no mesh."""
    if detection.dense is None:
        return None
    xy = transform_points(detection.dense, matrix)
    scale = float(np.sqrt(abs(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))
    depth = (np.full(len(xy), np.nan) if detection.dense_depth is None
             else np.asarray(detection.dense_depth, np.float64)[: len(xy)] * scale)
    return np.concatenate([xy, depth[:, None]], axis=1)


def stack_mesh_points(detections: Sequence[FaceLandmarks], matrices: Sequence[np.ndarray]) -> np.ndarray | None:
    """(B, N, 3) `crop_mesh_points` of several detections, NaN rows for those without a mesh; None when none has."""
    points = [crop_mesh_points(d, m) for d, m in zip(detections, matrices)]
    if all(p is None for p in points):
        return None
    n = max(len(p) for p in points if p is not None)
    return np.stack([p if p is not None else np.full((n, 3), np.nan) for p in points])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([a_inv, -(a_inv @ m[:, 2])[:, None]], axis=1)


def estimate_transform(src: np.ndarray, dst: np.ndarray, rotate: bool = False) -> np.ndarray:
    """Least-squares (2, 3) matrix mapping src (N, 2) onto dst (N, 2).

    rotate=False: x' = s x + t (isotropic scale + translation); rotate=True: similarity (scale, rotation, translation).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {src.shape} and {dst.shape}")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("points contain NaN or infinite values")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var = float((s0**2).sum())
    if var <= 1e-12:
        raise ValueError("source points are degenerate (all at the same position)")
    if rotate:
        # Umeyama without reflection: closed form for 2D via complex numbers.
        a = float((s0 * d0).sum()) / var
        b = float((s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum()) / var
        lin = np.array([[a, -b], [b, a]])
    else:
        s = float((s0 * d0).sum()) / var
        if s <= 0:
            raise ValueError("points cannot be aligned to the template without a rotation (mirrored or upside down)")
        lin = np.array([[s, 0.0], [0.0, s]])
    t = mu_d - lin @ mu_s
    return np.concatenate([lin, t[:, None]], axis=1)


def align_face(
    image: np.ndarray,
    five_points: np.ndarray,
    template: np.ndarray,
    size: int = 224,
    rotate: bool = False,
) -> AlignedFace:
    """Warp ``image`` so that ``five_points`` (5, 2) land on ``template`` in a size x size crop.

    ``template`` (5, 2): left eye, right eye, nose tip, left and right mouth corners in a 224x224 crop, scaled by
    size / 224; the reconstruction uses the face model's own (``FaceModel.five_point_template()``).
    """
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {img.shape}")
    pts = np.asarray(five_points, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected (5, 2) points, got {pts.shape}")
    tpl = np.asarray(template, dtype=np.float64)
    if tpl.shape != (5, 2):
        raise ValueError(f"expected a (5, 2) template, got {tpl.shape}")
    tpl = tpl * (size / 224.0)
    matrix = estimate_transform(pts, tpl, rotate=rotate)
    inverse = invert_affine(matrix)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    src, warp = img, matrix  # continuous coordinates (msma.pixels); converted for OpenCV below
    if scale < 0.5:
        # warpAffine samples without low-pass filtering: strongly shrinking a high-resolution face aliases. Blur only
        # the photo region the crop covers (cheap on huge photos) and warp from that sub-image.
        sigma = 0.5 / scale
        corners = transform_points(np.array([[0, 0], [size, 0], [0, size], [size, size]], float), inverse)
        pad = int(np.ceil(3 * sigma)) + 2
        h, w = img.shape[:2]
        x0, y0 = (np.floor(corners.min(0)).astype(int) - pad).clip(0)
        x1, y1 = np.ceil(corners.max(0)).astype(int) + pad + 1
        x1, y1 = min(w, x1), min(h, y1)
        if x1 > x0 and y1 > y0:
            src = cv2.GaussianBlur(np.ascontiguousarray(img[y0:y1, x0:x1]), (0, 0), sigma)
            warp = matrix.copy()
            warp[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
    crop = cv2.warpAffine(
        np.ascontiguousarray(src), opencv_affine(warp), (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )
    return AlignedFace(image=crop, matrix=matrix, inverse=inverse)
