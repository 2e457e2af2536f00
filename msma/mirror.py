"""Left-right mirror of a face model's coefficients: the coefficients of the horizontally flipped face.

The camera looks down -z with its principal point at the crop centre (`msma.face_model.Camera`), so flipping an
aligned crop left-right is the camera-frame reflection x -> -x. That reflection maps the face of coefficients ``c``
to the face of `CoefficientMirror.apply` (c): vertices through the model's own left-right vertex correspondence
(nearest mirrored vertex of the mean shape), identity / expression / albedo through the linear maps that reproduce
the mirrored basis (least squares over all vertices; for ICT the identity map is a signed identity matrix, as its
components are symmetric or antisymmetric, and the expression map swaps the ``_L`` / ``_R`` blendshapes), pose as
R -> S R S (pitch kept, yaw and roll negated; x translation negated) and the SH lighting by the parity of each band
in x. The network uses it for flip test-time augmentation (`msma.api.Reconstructor` ``flip_test``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from msma.face_model import Coefficients, FaceModel

__all__ = ["CoefficientMirror", "SH_MIRROR_SIGNS"]

# sign of each of the 9 SH basis functions of `msma.face_model.sh_irradiance` under x -> -x:
# [1, y, z, x, xy, yz, 3z^2 - 1, xz, x^2 - y^2]
SH_MIRROR_SIGNS = np.array([1, 1, 1, -1, -1, 1, 1, -1, 1], np.float32)
_REFLECT_X = np.array([-1.0, 1.0, 1.0])


def _basis_mirror(basis: np.ndarray, mean: np.ndarray, vertex_index: np.ndarray, flip: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """For ``field = mean + c @ basis`` with basis (K, N, 3): (map (K, K), offset (K,), worst relative residual) so
    that ``c @ map + offset`` is the coefficients of the mirrored field ``field[vertex_index] * flip``."""
    k = basis.shape[0]
    flat = basis.reshape(k, -1).T  # (3N, K)
    mirrored = (basis[:, vertex_index] * flip).reshape(k, -1).T
    mean_shift = (mean[vertex_index] * flip - mean).reshape(-1, 1)
    solution = np.linalg.lstsq(flat, np.concatenate([mirrored, mean_shift], axis=1), rcond=None)[0]
    residual = flat @ solution[:, :k] - mirrored
    worst = float((np.linalg.norm(residual, axis=0) / np.maximum(np.linalg.norm(mirrored, axis=0), 1e-12)).max())
    return solution[:, :k].T, solution[:, k], worst


@dataclass(frozen=True)
class CoefficientMirror:
    vertex_index: np.ndarray  # (N,) the vertex each vertex becomes under x -> -x
    identity_map: torch.Tensor  # (K, K): mirrored identity = identity @ identity_map + identity_offset
    identity_offset: torch.Tensor  # (K,)
    expression_map: torch.Tensor  # (E, E)
    texture_map: torch.Tensor  # (T, T)
    texture_offset: torch.Tensor  # (T,)
    worst_residual: float  # largest relative residual of the identity / expression / albedo maps

    @classmethod
    def for_model(cls, model: FaceModel) -> CoefficientMirror:
        mean = model.mean.detach().cpu().numpy().astype(np.float64)
        n = len(mean)
        _, vertex_index = cKDTree(mean).query(mean * _REFLECT_X)

        def basis(buffer: torch.Tensor) -> np.ndarray:
            return buffer.detach().cpu().numpy().astype(np.float64).reshape(-1, n, 3)

        identity_map, identity_offset, worst_id = _basis_mirror(basis(model.identity_basis), mean, vertex_index,
                                                                _REFLECT_X)
        expression_map, _, worst_exp = _basis_mirror(basis(model.expression_basis), np.zeros_like(mean),
                                                     vertex_index, _REFLECT_X)
        albedo_mean = model.albedo_mean.detach().cpu().numpy().astype(np.float64)
        texture_map, texture_offset, worst_tex = _basis_mirror(basis(model.albedo_basis), albedo_mean, vertex_index,
                                                               np.ones(3))

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(array, dtype=torch.float32)

        return cls(vertex_index.astype(np.int64), tensor(identity_map), tensor(identity_offset),
                   tensor(expression_map), tensor(texture_map), tensor(texture_offset),
                   max(worst_id, worst_exp, worst_tex))

    def apply(self, coeffs: Coefficients) -> Coefficients:
        """The coefficients of the face reflected in the camera's x axis (the flipped crop's face)."""
        device = coeffs.identity.device

        def mapped(values: torch.Tensor, matrix: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
            out = values @ matrix.to(device)
            return out if offset is None else out + offset.to(device)

        sign_pose = torch.tensor([1.0, -1.0, -1.0], device=device)
        sign_translation = torch.tensor([-1.0, 1.0, 1.0], device=device)
        sh = torch.as_tensor(SH_MIRROR_SIGNS, device=device).repeat(3)  # (27,): 3 colour channels x 9 bands
        return Coefficients(
            identity=mapped(coeffs.identity, self.identity_map, self.identity_offset),
            expression=mapped(coeffs.expression, self.expression_map),
            texture=mapped(coeffs.texture, self.texture_map, self.texture_offset),
            angles=coeffs.angles * sign_pose,
            translation=coeffs.translation * sign_translation,
            lighting=coeffs.lighting * sh,
        )

    def average(self, coeffs: Coefficients, flipped: Coefficients) -> Coefficients:
        """Flip test-time augmentation: the mean of ``coeffs`` and the mirror of the flipped image's ``flipped``.
        Angles are averaged directly (both estimates describe nearly the same rotation)."""
        back = self.apply(flipped)
        return Coefficients(**{name: 0.5 * (value + getattr(back, name))
                               for name, value in coeffs.as_dict().items()})
