from __future__ import annotations

import torch

from msma.face_model import MODEL_UNITS_TO_MM, Coefficients, FaceModel
from msma.mirror import CoefficientMirror


def random_faces(model: FaceModel, batch: int, seed: int = 0) -> Coefficients:
    g = torch.Generator().manual_seed(seed)
    coeffs = Coefficients.zeros(model, batch)
    coeffs.identity = torch.randn(batch, model.n_identity, generator=g)
    coeffs.expression = torch.rand(batch, model.n_expression, generator=g) * (
        torch.rand(batch, model.n_expression, generator=g) < 0.2)
    coeffs.texture = torch.randn(batch, model.n_texture, generator=g) * 0.5
    coeffs.angles = (torch.rand(batch, 3, generator=g) - 0.5) * torch.tensor([0.5, 1.4, 0.4])
    coeffs.translation = torch.randn(batch, 3, generator=g) * 0.3
    coeffs.lighting = torch.randn(batch, 27, generator=g) * 0.2
    return coeffs


def test_mirrored_coefficients_give_the_flipped_face(ict: FaceModel) -> None:
    """The mirror of a face's coefficients is that face reflected in the camera's x axis: every vertex lands on the
    reflection of its left-right partner, projects to the horizontally flipped pixel (x -> 224 - x, the crop centre
    is the principal point) and keeps its colour (albedo and SH lighting mirrored too)."""
    mirror = CoefficientMirror.for_model(ict)
    coeffs = random_faces(ict, 4)
    original, mirrored = ict.geometry(coeffs), ict.geometry(mirror.apply(coeffs))
    partner = torch.as_tensor(mirror.vertex_index)
    face = ict.face_vertices
    reflected = original.camera_vertices[:, partner] * torch.tensor([-1.0, 1.0, 1.0])
    error_mm = (mirrored.camera_vertices - reflected)[:, face].norm(dim=-1) * MODEL_UNITS_TO_MM
    assert error_mm.mean() < 0.05 and error_mm.max() < 1.0
    flipped_x = ict.camera.image_size - original.screen[:, partner, 0]
    assert (mirrored.screen[:, face, 0] - flipped_x[:, face]).abs().max() < 0.5
    colour_error = (mirrored.colors - original.colors[:, partner])[:, face].abs()
    assert colour_error.mean() < 0.01
    # a wrong sign anywhere (yaw, roll, x translation, an x-odd SH band) breaks the statements above
    wrong = mirror.apply(coeffs)
    wrong.angles[:, 1] *= -1
    assert (ict.geometry(wrong).camera_vertices - reflected)[:, face].norm(dim=-1).mean() * MODEL_UNITS_TO_MM > 1.0


def test_mirror_swaps_left_and_right_blendshapes_and_is_an_involution(ict: FaceModel) -> None:
    mirror = CoefficientMirror.for_model(ict)
    names = ict.expression_names
    coeffs = Coefficients.zeros(ict, 1)
    coeffs.expression[0, names.index("mouthSmile_L")] = 0.8
    coeffs.expression[0, names.index("jawLeft")] = 0.3
    coeffs.expression[0, names.index("jawOpen")] = 0.5
    out = dict(zip(names, mirror.apply(coeffs).expression[0].tolist()))
    assert abs(out["mouthSmile_R"] - 0.8) < 0.02 and abs(out["mouthSmile_L"]) < 0.02
    assert abs(out["jawRight"] - 0.3) < 0.02 and abs(out["jawLeft"]) < 0.02
    assert abs(out["jawOpen"] - 0.5) < 0.02
    faces = random_faces(ict, 3, seed=1)
    twice = mirror.apply(mirror.apply(faces))
    assert torch.allclose(twice.identity[:, :99], faces.identity[:, :99], atol=0.05)
    assert torch.allclose(twice.expression, faces.expression, atol=0.02)
    assert torch.allclose(twice.angles, faces.angles) and torch.allclose(twice.lighting, faces.lighting)


def test_flip_average_of_an_exact_mirror_pair_is_the_original(ict: FaceModel) -> None:
    mirror = CoefficientMirror.for_model(ict)
    faces = random_faces(ict, 2, seed=2)
    averaged = mirror.average(faces, mirror.apply(faces))
    assert torch.allclose(averaged.expression, faces.expression, atol=0.02)
    assert torch.allclose(averaged.angles, faces.angles, atol=1e-6)
