from __future__ import annotations

import numpy as np
import pytest

from msma.align import align_face, estimate_transform, invert_affine, transform_points

# a five-point template in the 224 crop (left eye, right eye, nose tip, mouth corners)
TEMPLATE = np.array([[89.3, 100.1], [134.7, 100.1], [112.0, 125.0], [93.5, 150.5], [130.5, 150.5]])


def _photo(h: int = 480, w: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("rotate", [False, True])
def test_roundtrip_identity(rotate):
    pts = TEMPLATE * 1.7 + np.array([150.0, 80.0])
    if rotate:
        a = np.deg2rad(12.0)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (pts - pts.mean(0)) @ rot.T + pts.mean(0)
    aligned = align_face(_photo(), pts, TEMPLATE, rotate=rotate)
    assert aligned.image.shape == (224, 224, 3) and aligned.image.dtype == np.uint8
    crop_pts = transform_points(pts, aligned.matrix)
    np.testing.assert_allclose(transform_points(crop_pts, aligned.inverse), pts, atol=1e-6)
    full = np.vstack([aligned.matrix, [0, 0, 1]]) @ np.vstack([aligned.inverse, [0, 0, 1]])
    np.testing.assert_allclose(full, np.eye(3), atol=1e-9)
    # an exactly scaled/rotated template is recovered exactly
    np.testing.assert_allclose(crop_pts, TEMPLATE, atol=1e-6)


def test_scale_translation_only_keeps_axes():
    pts = TEMPLATE * 0.5 + 20.0
    m = align_face(_photo(), pts, TEMPLATE).matrix
    assert m[0, 1] == 0 and m[1, 0] == 0 and m[0, 0] == pytest.approx(2.0) and m[1, 1] == pytest.approx(2.0)
    np.testing.assert_allclose(transform_points(pts, m), TEMPLATE, atol=1e-9)


def test_crop_content_matches_matrix():
    img = np.zeros((300, 400, 3), np.uint8)
    img[150, 200] = 255
    pts = TEMPLATE + np.array([90.0, 50.0])  # pure translation
    aligned = align_face(img, pts, TEMPLATE)
    y, x = np.unravel_index(aligned.image[..., 0].argmax(), (224, 224))
    np.testing.assert_allclose(transform_points(np.array([[200.0, 150.0]]), aligned.matrix)[0], [x, y], atol=1e-6)


def test_downscaling_large_face_is_antialiased():
    img = np.zeros((3000, 3000, 3), np.uint8)
    img[:, ::2] = 255  # 1-px stripes: must average to grey, not alias
    pts = TEMPLATE * 10 + 200
    crop = align_face(img, pts, TEMPLATE).image.astype(float)
    assert abs(crop[20:200, 20:200].mean() - 127.5) < 10 and crop[20:200, 20:200].std() < 10


def test_custom_template_and_size():
    tpl = TEMPLATE + 3.0
    pts = TEMPLATE * 2.0
    aligned = align_face(_photo(), pts, template=tpl, size=112)
    assert aligned.image.shape == (112, 112, 3)
    np.testing.assert_allclose(transform_points(pts, aligned.matrix), tpl * 0.5, atol=1e-6)


def test_invalid_inputs():
    with pytest.raises(ValueError):
        align_face(_photo(), np.zeros((4, 2)), TEMPLATE)
    with pytest.raises(ValueError, match="template"):
        align_face(_photo(), TEMPLATE, np.zeros((4, 2)))
    with pytest.raises(ValueError):
        estimate_transform(np.ones((5, 2)), TEMPLATE)
    np.testing.assert_allclose(invert_affine(invert_affine(np.array([[2.0, 1, 3], [0, 1, 4]]))),
                               [[2.0, 1, 3], [0, 1, 4]])


def test_crop_mesh_points_carries_depth_on_the_crop_scale():
    """x, y go through the similarity; mediapipe's depth (on the scale of x) is multiplied by its scale; a detection
    without depth gets NaN depth, one without a mesh None, and a stack pads mesh-less faces with NaN rows."""
    from msma.align import crop_mesh_points, stack_mesh_points
    from msma.landmarks.base import FaceLandmarks

    rng = np.random.default_rng(0)
    mesh = rng.uniform(50, 150, (478, 2))
    depth = rng.normal(0, 10, 478)
    det = FaceLandmarks(box=np.array([40.0, 40, 160, 160]), landmarks68=mesh[:68], score=1.0, detector="mediapipe",
                        dense=mesh, dense_depth=depth)
    angle, scale = 0.3, 2.0
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), 5.0],
                       [scale * np.sin(angle), scale * np.cos(angle), -7.0]])
    points = crop_mesh_points(det, matrix)
    assert points.shape == (478, 3)
    np.testing.assert_allclose(points[:, :2], transform_points(mesh, matrix))
    np.testing.assert_allclose(points[:, 2], depth * scale)
    no_depth = FaceLandmarks(det.box, det.landmarks68, 1.0, "mediapipe", dense=mesh)
    assert np.isnan(crop_mesh_points(no_depth, matrix)[:, 2]).all()
    no_mesh = FaceLandmarks(det.box, det.landmarks68, 1.0, "dlib")
    assert crop_mesh_points(no_mesh, matrix) is None
    stacked = stack_mesh_points([det, no_mesh], [matrix, matrix])
    assert stacked.shape == (2, 478, 3) and np.isnan(stacked[1]).all() and np.isfinite(stacked[0]).all()
    assert stack_mesh_points([no_mesh], [matrix]) is None
