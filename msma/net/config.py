"""Network configuration: one dataclass, JSON-serialisable, with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

BACKBONES = ("resnet18", "resnet34", "resnet50")
EXPRESSION_ACTIVATIONS = ("sigmoid", "clamp", "none")
MLKA_DILATIONS = ("scaled", "fixed")


@dataclass
class NetworkConfig:
    """Everything needed to rebuild an `MSMANet` (stored as JSON inside every checkpoint).

    backbone: "resnet18" | "resnet34" | "resnet50".
    fusion: HRNet-style cross-stage exchange between stages 2-4.
    attention: MLKA large-kernel attention on stages 2-4.
    multi_depth_heads: heads read stages 2/3/4 (paper) instead of all reading stage 4.
        None (default) means "fusion or attention", so fusion=False + attention=False is exactly a
        plain Deep3DFaceRecon-style ResNet regressor.
    n_identity / n_expression / n_texture: coefficient counts (ICT default 100/53/80; BFM09 80/64/80).
    image_size: the size the network is trained on (the aligned crop, 224). The network itself is resolution
        agnostic (global pooling), so smaller images work for tests.
    width: channel multiplier of the backbone (1.0 = standard ResNet; 0.5 = light CPU variant).
    expression_activation: "sigmoid" (ICT ARKit weights in [0, 1]), "clamp" (ARKit weights = clamp(raw, 0, 1):
        the raw values are trained with an L1 loss, whose minimiser is the conditional median, so a weight the
        network is unsure about is exactly 0 and nothing saturates) or "none" (BFM, unbounded).
    mlka_dilation: "scaled" (dilations lowered to fit the stage maps at `image_size`, see `msma.net.mlka`) or
        "fixed" (the paper's 2/3/4 whatever the map size; what checkpoints written before this field used).
    head_hidden: 0 = one linear layer per attribute on the globally pooled features (paper); > 0 = the identity
        and expression heads read a 4 x 4 pooled grid of their stage through a hidden layer of this width
        (position-aware, see `msma.net.heads`).
    """

    backbone: str = "resnet18"
    fusion: bool = True
    attention: bool = True
    n_identity: int = 100
    n_expression: int = 53
    n_texture: int = 80
    image_size: int = 224
    width: float = 1.0
    expression_activation: str = "sigmoid"
    multi_depth_heads: bool | None = None
    mlka_dilation: str = "scaled"
    head_hidden: int = 0

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.expression_activation not in EXPRESSION_ACTIVATIONS:
            raise ValueError(
                f"expression_activation must be one of {EXPRESSION_ACTIVATIONS}, got {self.expression_activation!r}"
            )
        if self.mlka_dilation not in MLKA_DILATIONS:
            raise ValueError(f"mlka_dilation must be one of {MLKA_DILATIONS}, got {self.mlka_dilation!r}")
        if int(self.head_hidden) < 0:
            raise ValueError(f"head_hidden must be >= 0, got {self.head_hidden}")
        if not 0.0 < self.width <= 4.0:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        for name in ("n_identity", "n_expression", "n_texture"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 (five stride-2 steps), got {self.image_size}")

    @property
    def uses_multi_depth_heads(self) -> bool:
        if self.multi_depth_heads is None:
            return self.fusion or self.attention
        return bool(self.multi_depth_heads)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown NetworkConfig field(s): {unknown}")
        data = dict(data)
        data.setdefault("mlka_dilation", "fixed")  # configs saved before the field existed ran the fixed dilations
        return cls(**data)

    def stage_map_sizes(self) -> tuple[int, int, int]:
        """H (= W) of the stage 2/3/4 maps at `image_size` (strides 8/16/32, rounded up like the convolutions)."""
        return tuple(-(-self.image_size // s) for s in (8, 16, 32))  # type: ignore[return-value]

    # ------------------------------------------------------------------ presets
    @classmethod
    def light(cls, **overrides: Any) -> NetworkConfig:
        """Fast CPU variant: ResNet-18 at half width with fusion and attention (see benchmarks/net_speed.py)."""
        return cls(**{"backbone": "resnet18", "width": 0.5, **overrides})

    @classmethod
    def paper(cls, **overrides: Any) -> NetworkConfig:
        """The paper's network: ResNet-50, fusion + MLKA, BFM09 coefficient sizes 80/64/80, unbounded expression."""
        base = {
            "backbone": "resnet50",
            "n_identity": 80,
            "n_expression": 64,
            "n_texture": 80,
            "expression_activation": "none",
            "mlka_dilation": "fixed",
        }
        return cls(**{**base, **overrides})

    @classmethod
    def plain_resnet(cls, **overrides: Any) -> NetworkConfig:
        """Ablation: Deep3DFaceRecon-style regressor, no fusion, no attention, every head reads the last stage."""
        return cls(**{"fusion": False, "attention": False, **overrides})
