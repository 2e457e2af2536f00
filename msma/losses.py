"""Losses shared by fitting and training (weights follow MSMA / Deep3DFaceRecon; values: `msma.train.LossWeights`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from msma.face_model import Coefficients

# iBUG indices weighted x20 in the paper's landmark loss: nose (27-35) and inner mouth (60-67).
NOSE_AND_INNER_MOUTH = list(range(27, 36)) + list(range(60, 68))
JAW = list(range(0, 17))


def landmark_weights(
    nose_mouth_weight: float = 20.0, jaw_weight: float = 1.0, device: torch.device | str | None = None
) -> torch.Tensor:
    weights = torch.ones(68, device=device)
    weights[NOSE_AND_INNER_MOUTH] = nose_mouth_weight
    weights[JAW] = jaw_weight
    return weights


def landmark_loss(
    predicted: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    image_size: float = 224.0,
) -> torch.Tensor:
    """Weighted mean squared 2D distance. predicted/target (B, 68, 2) pixels, valid (B, 68) or None."""
    squared = ((predicted - target) / image_size).pow(2).sum(-1)  # (B, 68)
    w = torch.ones_like(squared) if weights is None else weights.expand_as(squared)
    if valid is not None:
        w = w * valid.to(w.dtype)
    return (squared * w).sum() / w.sum().clamp_min(1e-8)


def photometric_loss(rendered: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L2 colour distance inside the mask. rendered/target (B, H, W, 3), mask (B, H, W)."""
    distance = torch.sqrt(((rendered - target) ** 2).sum(-1) + 1e-8)  # (B, H, W)
    m = mask.to(distance.dtype)
    return (distance * m).sum() / m.sum().clamp_min(1.0)


@dataclass
class RegularizerWeights:
    identity: float = 1.3
    expression: float = 1.1
    texture: float = 0.06
    lighting_monochrome: float = 5.0


def coefficient_regularizer(coeffs: Coefficients, w: RegularizerWeights) -> torch.Tensor:
    """Deep3DFaceRecon's coefficient L2 (per-sample mean of squared coefficients, weighted)."""
    return (
        w.identity * coeffs.identity.pow(2).sum(-1).mean()
        + w.expression * coeffs.expression.pow(2).sum(-1).mean()
        + w.texture * coeffs.texture.pow(2).sum(-1).mean()
    )


def lighting_regularizer(lighting: torch.Tensor) -> torch.Tensor:
    """Penalise coloured light: each SH band should be the same across R, G, B. lighting (B, 27)."""
    gamma = lighting.view(-1, 3, 9)
    return (gamma - gamma.mean(dim=1, keepdim=True)).pow(2).mean()


def albedo_flatness(albedo: torch.Tensor, skin_vertices: torch.Tensor) -> torch.Tensor:
    """Reflectance loss: skin albedo should vary little around its mean. albedo (B, N, 3)."""
    skin = albedo[:, skin_vertices]
    return (skin - skin.mean(dim=1, keepdim=True)).pow(2).sum(-1).mean()
