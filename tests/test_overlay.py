from __future__ import annotations

import time

import numpy as np
import pytest

from msma.overlay import (
    DETECTED_COLOR,
    FITTED_COLOR,
    blend_render,
    draw_landmarks,
    draw_overlay,
    draw_wireframe,
    front_facing,
    unoccluded_faces,
    visible_faces_from_face_index,
)


def grid(n: int, x0: float, y0: float, size: float, depth: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """(n*n, 3) [x_pix, y_pix, depth] grid facing the camera, and its triangles (CCW in model space, y up)."""
    xs = np.linspace(x0, x0 + size, n)
    ys = np.linspace(y0, y0 + size, n)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel(), np.full(n * n, depth)], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    # image y grows downwards, so model-space CCW is clockwise here: (a, c, b) has negative area
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([a, d, c], 1)])
    return points, faces


@pytest.fixture
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 120, (200, 240, 3)).astype(np.uint8)


def test_front_facing_orientation():
    points, faces = grid(4, 10, 10, 50)
    assert front_facing(points, faces).all()
    assert not front_facing(points, faces[:, ::-1]).any()


def test_wireframe_changes_only_mesh_pixels(photo):
    before = photo.copy()
    points, faces = grid(6, 50, 40, 100)
    out = draw_wireframe(photo, points[:, :2], faces, alpha=0.8)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(photo, before)  # input untouched
    changed = np.any(out != photo, axis=2)
    assert changed[40:141, 50:151].sum() > 300
    outside = changed.copy()
    outside[38:143, 48:153] = False
    assert not outside.any()


def test_wireframe_back_faces_culled(photo):
    points, faces = grid(5, 50, 40, 100)
    out = draw_wireframe(photo, points[:, :2], faces[:, ::-1])
    assert np.array_equal(out, photo)
    forced = draw_wireframe(photo, points[:, :2], faces[:, ::-1], visible_faces=np.ones(len(faces), bool))
    assert np.any(forced != photo)


def test_occlusion_by_depth():
    near, near_faces = grid(11, 20, 20, 100, depth=4.0)
    far, far_faces = grid(11, 20, 20, 100, depth=6.0)
    points = np.concatenate([near, far])
    faces = np.concatenate([near_faces, far_faces + len(near)])
    visible = unoccluded_faces(points, faces)
    assert visible[: len(near_faces)].all()
    assert not visible[len(near_faces) :].any()


def test_visible_faces_from_face_index():
    face_index = np.array([[-1, 0, 3], [3, 3, -1]])
    assert visible_faces_from_face_index(face_index, 5).tolist() == [True, False, False, True, False]


def test_blend_render(photo):
    render = np.zeros((200, 240, 3), np.float32)
    render[50:100, 60:120] = (1.0, 0.5, 0.0)
    mask = np.zeros((200, 240), bool)
    mask[50:100, 60:120] = True
    out = blend_render(photo, render, mask, alpha=1.0)
    assert np.array_equal(out[50:100, 60:120], np.broadcast_to(np.array([255, 128, 0], np.uint8), (50, 60, 3)))
    outside = np.ones((200, 240), bool)
    outside[50:100, 60:120] = False
    assert np.array_equal(out[outside], photo[outside])
    with pytest.raises(ValueError):
        blend_render(photo, render[:100], mask[:100])


def test_blend_render_from_crop(photo):
    crop = np.full((20, 20, 3), 255, np.uint8)
    mask = np.ones((20, 20), np.float32)
    crop_to_photo = np.array([[2.0, 0.0, 100.0], [0.0, 2.0, 50.0]])  # 20 px crop -> 40 px at (100, 50)
    out = blend_render(photo, crop, mask, alpha=1.0, crop_to_photo=crop_to_photo)
    assert np.all(out[55:85, 105:135] == 255)
    assert np.array_equal(out[:40], photo[:40])


def test_landmarks_and_legend(photo):
    fitted = np.array([[100.0, 150.0], [150.0, 150.0]])
    detected = np.array([[100.0, 100.0]])
    out = draw_landmarks(photo, fitted, detected, radius=3)
    assert tuple(out[150, 100]) == FITTED_COLOR
    ring = out[94:107, 94:107].reshape(-1, 3).astype(int)
    assert np.abs(ring - DETECTED_COLOR).sum(axis=1).min() < 30
    assert np.array_equal(out[100, 100], photo[100, 100])  # ring, not a dot
    assert np.any(out[:30, :60] != photo[:30, :60])  # legend in the corner
    no_legend = draw_landmarks(photo, fitted, None, radius=3, legend=False)
    assert np.array_equal(no_legend[:30, :60], photo[:30, :60])


def test_draw_overlay_combinations(photo):
    points, faces = grid(6, 50, 40, 100)
    out = draw_overlay(photo, points, faces, landmarks68=points[:68, :2], detected_landmarks68=points[:68, :2] + 2)
    assert out.shape == photo.shape and out.dtype == np.uint8 and np.any(out != photo)
    assert np.array_equal(draw_overlay(photo), photo)
    mask = np.zeros(photo.shape[:2], bool)
    mask[10:20, 10:20] = True
    shaded = draw_overlay(photo, render_rgb=np.full(photo.shape, 200, np.uint8), render_mask=mask, alpha=0.5)
    assert np.any(shaded[10:20, 10:20] != photo[10:20, 10:20])
    with pytest.raises(ValueError):
        draw_overlay(photo, render_rgb=np.zeros(photo.shape, np.uint8))


def test_wireframe_fast_on_large_mesh():
    # ~26k vertices / 52k triangles on a 1024 px photo; generous bound for a shared CI box
    points, faces = grid(162, 200, 150, 600)
    points[:, 2] += 0.01 * np.sin(points[:, 0] / 30)
    image = np.zeros((1024, 1024, 3), np.uint8)
    draw_overlay(image, points, faces)  # warm the edge cache
    start = time.perf_counter()
    out = draw_overlay(image, points, faces, landmarks68=points[:68, :2])
    assert time.perf_counter() - start < 1.0
    assert np.any(out != 0)
