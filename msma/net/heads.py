"""Multi-attribute regression heads: global-average-pooled stage features + one linear layer per attribute.

Which stage each attribute reads (MSMA author's code, `ReconNetWrapper.forward`):
  stage 4 (deepest): identity, expression, translation z
  stage 3:           texture, rotation angles (3)
  stage 2:           lighting (27), translation x, y
With `multi_depth=False` every head reads stage 4 (Deep3DFaceRecon).

Initialisation and output parametrisation (all last layers start at zero, as Deep3DFaceRecon, so an untrained
network predicts the mean face, frontal pose, centred translation and plain ambient lighting for every image):
  identity, texture:  raw coefficients (0 = mean shape / mean albedo)
  expression:         "sigmoid": sigmoid(raw + EXPRESSION_LOGIT_OFFSET); the offset -4 makes the initial ARKit
                      weights sigmoid(-4) ~= 0.018 (near neutral, but with a usable gradient). "none": raw.
  angles:             (pitch, yaw, roll) radians, raw (0 = frontal)
  translation:        (x, y, z) model units, raw (0 = face at the origin, 10 units in front of the camera)
  lighting:           (B, 27) = 3 colour channels x 9 SH bands, colour-major: index 9*c + k is band k of colour c
                      (R, G, B), the `gamma.reshape(B, 3, 9)` layout of Deep3DFaceRecon. Raw: zero means ambient
                      light, because `msma.face_model.sh_irradiance` adds Deep3DFaceRecon's 0.8 to the DC band
                      (DEFAULT_AMBIENT = 0.0 here so it is not added twice).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

EXPRESSION_LOGIT_OFFSET = -4.0
DEFAULT_AMBIENT = 0.0
N_LIGHTING = 27

HIDDEN_HEADS = ("identity", "expression")
SPATIAL_GRID = 4
SPATIAL_CHANNELS = 32

# attribute -> index into the (stage2, stage3, stage4) list it reads (multi-depth layout)
HEAD_STAGES: dict[str, int] = {
    "identity": 2,
    "expression": 2,
    "translation_z": 2,
    "texture": 1,
    "angles": 1,
    "lighting": 0,
    "translation_xy": 0,
}


class MultiAttributeHeads(nn.Module):
    """forward([s2 (B,C2,h2,w2), s3 (B,C3,h3,w3), s4 (B,C4,h4,w4)]) -> dict of coefficient tensors.

    Output shapes: identity (B, n_identity), expression (B, n_expression), texture (B, n_texture), angles (B, 3),
    translation (B, 3), lighting (B, 27).
    """

    def __init__(
        self,
        stage_channels: Sequence[int],
        n_identity: int,
        n_expression: int,
        n_texture: int,
        multi_depth: bool = True,
        expression_activation: str = "sigmoid",
        ambient: float = DEFAULT_AMBIENT,
        hidden: int = 0,
    ) -> None:
        super().__init__()
        if len(stage_channels) != 3:
            raise ValueError("heads read three stages (2, 3, 4)")
        if expression_activation not in ("sigmoid", "clamp", "none"):
            raise ValueError(f"unknown expression_activation {expression_activation!r}")
        self.multi_depth = multi_depth
        self.expression_activation = expression_activation
        self.ambient = float(ambient)
        sizes = {
            "identity": n_identity,
            "expression": n_expression,
            "translation_z": 1,
            "texture": n_texture,
            "angles": 3,
            "lighting": N_LIGHTING,
            "translation_xy": 2,
        }
        self.stage_of = {name: (stage if multi_depth else 2) for name, stage in HEAD_STAGES.items()}
        spatial = HIDDEN_HEADS if hidden else ()
        self.fc = nn.ModuleDict({
            name: nn.Linear(stage_channels[self.stage_of[name]], n) for name, n in sizes.items() if name not in spatial
        })
        # optional position-aware heads (identity / expression): global average pooling keeps *what* the trunk saw
        # but not *where*; an open jaw or a blink is a local pattern at a known place of the aligned crop. These
        # heads pool to a 4 x 4 grid, reduce channels (1x1 conv) and read the flattened grid through a hidden layer.
        self.hidden = nn.ModuleDict({
            name: nn.Sequential(
                nn.AdaptiveAvgPool2d(SPATIAL_GRID),
                nn.Conv2d(stage_channels[self.stage_of[name]], SPATIAL_CHANNELS, 1, bias=False),
                nn.BatchNorm2d(SPATIAL_CHANNELS),
                nn.ReLU(inplace=True),
                nn.Flatten(1),
                nn.Linear(SPATIAL_CHANNELS * SPATIAL_GRID**2, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, sizes[name]),
            )
            for name in spatial
        }) if hidden else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        last = list(self.fc.values()) + ([seq[-1] for seq in self.hidden.values()] if self.hidden else [])
        for layer in last:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, feats: Sequence[torch.Tensor], return_logits: bool = False) -> dict[str, torch.Tensor]:
        """``return_logits``: also return "expression_logits" (B, n_expression), the values before the activation
        (with the sigmoid's offset) for losses that work on them."""
        used = sorted(set(self.stage_of.values()))
        pooled = {s: torch.flatten(self.pool(feats[s]), 1) for s in used}  # (B, C_s)
        raw = {name: layer(pooled[self.stage_of[name]]) for name, layer in self.fc.items()}
        if self.hidden is not None:
            raw.update({name: head(feats[self.stage_of[name]]) for name, head in self.hidden.items()})

        expression = raw["expression"]  # (B, n_expression)
        logits = expression
        if self.expression_activation == "sigmoid":
            logits = expression + EXPRESSION_LOGIT_OFFSET
            expression = torch.sigmoid(logits)
        elif self.expression_activation == "clamp":
            expression = expression.clamp(0.0, 1.0)

        lighting = raw["lighting"].view(-1, 3, 9)  # (B, RGB, SH band)
        ambient = torch.zeros(9, dtype=lighting.dtype, device=lighting.device)
        ambient[0] = self.ambient
        lighting = (lighting + ambient).reshape(-1, N_LIGHTING)  # (B, 27)

        out = {
            "identity": raw["identity"],  # (B, n_identity)
            "expression": expression,  # (B, n_expression)
            "texture": raw["texture"],  # (B, n_texture)
            "angles": raw["angles"],  # (B, 3) pitch, yaw, roll
            "translation": torch.cat([raw["translation_xy"], raw["translation_z"]], dim=1),  # (B, 3)
            "lighting": lighting,  # (B, 27)
        }
        if return_logits:
            out["expression_logits"] = logits
        return out
