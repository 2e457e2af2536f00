from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from msma.face_model import (
    Coefficients,
    FaceModel,
    euler_to_matrix,
    matrix_to_euler,
    sh_irradiance,
    vertex_normals,
)


def test_ict_sizes(ict: FaceModel) -> None:
    assert ict.n_identity == 100
    assert ict.n_expression == 53
    assert ict.n_texture == 80
    assert "jawOpen" in ict.expression_names and "eyeBlink_L" in ict.expression_names
    assert ict.triangles.max() < ict.n_vertices
    assert len(ict.landmarks68) == 68


def test_coefficients_in_vertices_out_batched(ict: FaceModel) -> None:
    coeffs = Coefficients.zeros(ict, batch=2)
    coeffs.identity[1, 0] = 2.0
    verts = ict(coeffs.identity, coeffs.expression)
    assert verts.shape == (2, ict.n_vertices, 3)
    torch.testing.assert_close(verts[0], ict.mean)
    assert not torch.allclose(verts[0], verts[1])
    subset = ict.vertices_subset(coeffs.identity, coeffs.expression, ict.landmarks68)
    torch.testing.assert_close(subset, verts[:, ict.landmarks68])


def test_jaw_open_moves_chin_down(ict: FaceModel) -> None:
    coeffs = Coefficients.zeros(ict, 1)
    coeffs.expression[0, ict.expression_names.index("jawOpen")] = 1.0
    chin = ict.landmarks68[8]
    moved = ict(coeffs.identity, coeffs.expression)[0, chin] - ict.mean[chin]
    assert moved[1] < -0.05  # at least 5 mm down


def test_mean_face_faces_camera_and_fits_crop(ict: FaceModel) -> None:
    geometry = ict.geometry(Coefficients.zeros(ict, 1))
    lm = geometry.landmarks2d[0]
    assert (lm > 0).all() and (lm < 224).all()
    normals = vertex_normals(geometry.camera_vertices, ict.triangles)[0, ict.face_vertices]
    assert normals[:, 2].mean() > 0.3  # outward winding: the face points at the camera (+z)
    template = ict.five_point_template()
    assert template[0, 0] < template[1, 0] and template[2, 1] < template[3, 1]


def test_differentiable(ict: FaceModel) -> None:
    coeffs = Coefficients.zeros(ict, 1)
    for value in coeffs.as_dict().values():
        value.requires_grad_(True)
    coeffs.lighting.data[:, 2] = 0.3  # a directional band, so shading depends on the normals
    geometry = ict.geometry(coeffs)
    (geometry.colors.sum() + geometry.screen.sum()).backward()
    for name in ("identity", "expression", "texture", "angles", "translation", "lighting"):
        grad = getattr(coeffs, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_euler_round_trip() -> None:
    angles = torch.tensor([[0.3, -0.7, 0.2]], dtype=torch.float64)
    rotation = euler_to_matrix(angles)[0].numpy()
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(rotation), angles[0].numpy(), atol=1e-10)


def test_zero_lighting_is_ambient_grey() -> None:
    normals = torch.nn.functional.normalize(torch.randn(1, 10, 3), dim=-1)
    shading = sh_irradiance(normals, torch.zeros(1, 27))
    torch.testing.assert_close(shading, torch.full_like(shading, shading[0, 0, 0].item()))
    assert 0.5 < shading[0, 0, 0] < 1.0


def test_bfm_loader_on_synthetic_file(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n, f = 120, 200
    mat = {
        "meanshape": rng.normal(size=(1, 3 * n)).astype(np.float32),
        "idBase": rng.normal(size=(3 * n, 80)).astype(np.float32),
        "exBase": rng.normal(size=(3 * n, 64)).astype(np.float32),
        "meantex": rng.uniform(0, 255, size=(1, 3 * n)).astype(np.float32),
        "texBase": rng.normal(size=(3 * n, 80)).astype(np.float32),
        "tri": rng.integers(1, n + 1, size=(f, 3)).astype(np.float64),
        "keypoints": np.arange(1, 69, dtype=np.float64)[None],
        "skinmask": np.ones((1, n)),
    }
    path = tmp_path / "BFM_model_front.mat"
    savemat(path, mat)
    bfm = FaceModel.bfm(path)
    assert (bfm.n_identity, bfm.n_expression, bfm.n_texture) == (80, 64, 80)
    assert bfm.expression_range is None
    coeffs = Coefficients.zeros(bfm, 1)
    coeffs.identity[0, 3] = 1.0
    verts = bfm(coeffs.identity, coeffs.expression)[0].numpy()
    mean = mat["meanshape"].reshape(-1, 3)
    expected = mean - mean.mean(0) + mat["idBase"][:, 3].reshape(-1, 3)
    np.testing.assert_allclose(verts, expected, atol=1e-4)
    assert int(bfm.landmarks68[0]) == 0  # 1-based indices converted
    albedo = bfm.albedo(coeffs.texture)[0].numpy()
    np.testing.assert_allclose(albedo, np.clip(mat["meantex"].reshape(-1, 3) / 255, 0, 1), atol=1e-5)


def test_bfm_loader_rejects_wrong_layout(tmp_path) -> None:
    path = tmp_path / "other.mat"
    savemat(path, {"something": np.zeros(3)})
    with pytest.raises(ValueError, match="missing"):
        FaceModel.bfm(path)
