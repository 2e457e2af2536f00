"""MSMANet: ResNet backbone -> cross-stage fusion (stages 2-4) -> MLKA (stages 2-4) -> multi-attribute heads."""

from __future__ import annotations

import torch
from torch import nn

from msma.net.backbone import ResNetBackbone
from msma.net.config import NetworkConfig
from msma.net.fusion import CrossStageFusion
from msma.net.heads import MultiAttributeHeads
from msma.net.mlka import MLKA

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_KEYS = ("identity", "expression", "texture", "angles", "translation", "lighting")


class MSMANet(nn.Module):
    """Image -> morphable-model coefficients.

    forward(images (B, 3, H, W) float RGB in [0, 1]) -> dict:
      identity (B, n_identity), expression (B, n_expression), texture (B, n_texture),
      angles (B, 3) pitch/yaw/roll radians, translation (B, 3), lighting (B, 27) (see `msma.net.heads`).
    The ImageNet mean/std normalisation happens inside. Any H, W >= 32 works (global pooling); the training
    size is `config.image_size` (224, the aligned crop).
    With fusion=False and attention=False (and multi_depth_heads left at None) the network is a plain ResNet
    regressor whose heads all read the last stage: `fusion` and `attention` are then None, no extra module exists.
    ``pretrained``: ImageNet-initialised timm trunk (downloads through the Hub; standard width only).
    """

    def __init__(self, config: NetworkConfig | None = None, pretrained: bool = False) -> None:
        super().__init__()
        self.config = config if config is not None else NetworkConfig()
        cfg = self.config
        self.backbone = ResNetBackbone(cfg.backbone, width=cfg.width, pretrained=pretrained)
        stage_channels = self.backbone.channels[1:]  # stages 2, 3, 4
        self.fusion: CrossStageFusion | None = CrossStageFusion(stage_channels) if cfg.fusion else None
        maps = cfg.stage_map_sizes() if cfg.mlka_dilation == "scaled" else (None, None, None)
        self.attention: nn.ModuleList | None = (
            nn.ModuleList(MLKA(c, map_size=s) for c, s in zip(stage_channels, maps)) if cfg.attention else None
        )
        self.heads = MultiAttributeHeads(
            stage_channels,
            n_identity=cfg.n_identity,
            n_expression=cfg.n_expression,
            n_texture=cfg.n_texture,
            multi_depth=cfg.uses_multi_depth_heads,
            expression_activation=cfg.expression_activation,
            hidden=cfg.head_hidden,
        )
        # non-persistent: not learnable state, kept out of checkpoints
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def output_sizes(self) -> dict[str, int]:
        cfg = self.config
        return {
            "identity": cfg.n_identity,
            "expression": cfg.n_expression,
            "texture": cfg.n_texture,
            "angles": 3,
            "translation": 3,
            "lighting": 27,
        }

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,H,W) in [0,1] -> [s2 (B,C2,H/8,W/8), s3 (B,C3,H/16,W/16), s4 (B,C4,H/32,W/32)] after
        fusion and attention (what the heads read)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if min(images.shape[-2:]) < 32:
            raise ValueError(f"images must be at least 32x32, got {tuple(images.shape[-2:])}")
        x = (images - self.pixel_mean) / self.pixel_std
        feats = self.backbone(x)[1:]  # stage 1 is not used by the heads
        if self.fusion is not None:
            feats = self.fusion(feats)
        if self.attention is not None:
            feats = [block(f) for block, f in zip(self.attention, feats)]
        return feats

    def forward(self, images: torch.Tensor, return_logits: bool = False) -> dict[str, torch.Tensor]:
        """``return_logits``: add "expression_logits" (see `MultiAttributeHeads.forward`)."""
        return self.heads(self.features(images), return_logits=return_logits)
