"""MSMA network blocks (timm style, one block per file).

from msma.net import MSMANet, NetworkConfig
net = MSMANet(NetworkConfig.light())
coeffs = net(images)  # images (B, 3, 224, 224) in [0, 1] -> dict of coefficient tensors
"""

from __future__ import annotations

from msma.net.backbone import ResNetBackbone
from msma.net.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    load_weights,
    read_checkpoint_metadata,
    save_checkpoint,
)
from msma.net.config import NetworkConfig
from msma.net.fusion import CrossStageFusion
from msma.net.heads import DEFAULT_AMBIENT, EXPRESSION_LOGIT_OFFSET, MultiAttributeHeads
from msma.net.mlka import MLKA
from msma.net.model import OUTPUT_KEYS, MSMANet

__all__ = [
    "DEFAULT_AMBIENT",
    "EXPRESSION_LOGIT_OFFSET",
    "MLKA",
    "OUTPUT_KEYS",
    "CheckpointMismatchError",
    "CrossStageFusion",
    "MSMANet",
    "MultiAttributeHeads",
    "NetworkConfig",
    "ResNetBackbone",
    "load_checkpoint",
    "load_weights",
    "read_checkpoint_metadata",
    "save_checkpoint",
]
