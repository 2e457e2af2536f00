from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from msma.compare import ShapeComparison, align_points, distance_heatmap_figure, identity_distance


@pytest.fixture(scope="module")
def sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=2, radius=0.8)


def test_identical_meshes(sphere):
    result = identity_distance(sphere.vertices, sphere.vertices)
    assert isinstance(result, ShapeComparison)
    assert result.per_vertex_mm.shape == (len(sphere.vertices),)
    assert result.mean_mm == pytest.approx(0, abs=1e-9) and result.rms_mm == pytest.approx(0, abs=1e-9)


def test_rigid_motion_removed(sphere):
    rot = Rotation.from_euler("xyz", [0.4, -0.7, 0.2]).as_matrix()
    moved = sphere.vertices @ rot.T + [1.0, -2.0, 3.0]
    assert identity_distance(sphere.vertices, moved, align="none").mean_mm > 10
    result = identity_distance(sphere.vertices, moved)
    assert result.max_mm < 1e-6
    assert np.allclose(result.rotation, rot.T, atol=1e-8)


def test_similarity_removes_scale(sphere):
    scaled = 1.2 * sphere.vertices + 0.5
    assert identity_distance(sphere.vertices, scaled, align="rigid").mean_mm > 1
    result = identity_distance(sphere.vertices, scaled, align="similarity")
    assert result.max_mm < 1e-6 and result.scale == pytest.approx(1 / 1.2)


def test_known_bump(sphere):
    vertices = sphere.vertices
    region = np.flatnonzero(vertices[:, 2] < 0.5)  # align on the part without the bump
    bump = np.flatnonzero(vertices[:, 2] > 0.7)
    bumped = vertices.copy()
    bumped[bump] += [0.0, 0.0, 0.02]  # 0.02 dm = 2 mm
    result = identity_distance(vertices, bumped, region_vertex_indices=region)
    assert np.allclose(result.per_vertex_mm[bump], 2.0, atol=1e-6)
    assert np.allclose(np.delete(result.per_vertex_mm, bump), 0.0, atol=1e-6)
    assert result.mean_mm == pytest.approx(0.0, abs=1e-6)  # stats over the region only
    cm = identity_distance(vertices, bumped, region_vertex_indices=region, unit_to_mm=10.0)
    assert np.allclose(cm.per_vertex_mm[bump], 0.2)
    mask = np.zeros(len(vertices), bool)
    mask[region] = True
    assert np.allclose(identity_distance(vertices, bumped, mask).per_vertex_mm, result.per_vertex_mm)


def test_invalid_inputs(sphere):
    with pytest.raises(ValueError):
        identity_distance(sphere.vertices, sphere.vertices[:-1])
    with pytest.raises(ValueError):
        identity_distance(sphere.vertices, sphere.vertices, align="affine")
    with pytest.raises(ValueError):
        identity_distance(sphere.vertices, sphere.vertices, region_vertex_indices=[len(sphere.vertices)])
    with pytest.raises(ValueError):
        align_points(np.zeros((2, 3)), np.zeros((2, 3)))


def test_heatmap_figure(sphere):
    values = np.abs(sphere.vertices[:, 0]) * 10
    fig = distance_heatmap_figure(sphere.vertices, sphere.faces, values, title="shape difference")
    assert isinstance(fig, go.Figure)
    mesh = fig.data[0]
    assert isinstance(mesh, go.Mesh3d)
    assert "mm" in mesh.colorbar.title.text
    assert len(mesh.intensity) == len(sphere.vertices)
    assert fig.layout.scene.aspectmode == "data"
    assert fig.layout.scene.camera.eye.z > 0 and fig.layout.scene.camera.up.y == 1
