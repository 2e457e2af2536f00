"""ResNet-18/34/50 trunk from timm (`features_only`), returning the four stage feature maps.

timm keeps torchvision's parameter names (`conv1`, `bn1`, `layer1.0.conv1`, ... `downsample.0`), so checkpoints
written with the hand-written trunk this module used to contain load after a prefix change
(`msma.net.checkpoint.remap_legacy_keys`). ``pretrained=True`` asks timm for its ImageNet weights through the
Hugging Face Hub (users online, standard width only); offline runs start from timm's random init, with the last
BatchNorm of every residual block zeroed (``zero_init_last``) so that each block starts as the identity.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

BACKBONES = ("resnet18", "resnet34", "resnet50")
_EXPANSION = {"resnet18": 1, "resnet34": 1, "resnet50": 4}


def _define_missing_torchvision_ops() -> None:
    # A torchvision wheel built for CUDA next to a CPU-only torch cannot load its C extension; its import then
    # fails registering fake kernels for `torchvision::nms` / `qnms`, ops whose schemas the extension would have
    # defined. timm only needs torchvision's Python parts (FX feature extraction, FrozenBatchNorm2d), so the two
    # schemas are declared without kernels: the import works and detection ops, never used here, stay unavailable.
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        try:
            lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # already defined
            pass
    _LIBRARIES.append(lib)  # a Library removes its definitions when garbage-collected


_LIBRARIES: list = []


def import_timm():
    """``import timm``, working around a torchvision whose C extension does not match the installed torch."""
    try:
        import timm
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")]:
            del sys.modules[name]
        _define_missing_torchvision_ops()
        import timm
    return timm


def stage_planes(width: float) -> tuple[int, int, int, int]:
    return tuple(max(8, int(round(p * width))) for p in (64, 128, 256, 512))  # type: ignore[return-value]


class ResNetBackbone(nn.Module):
    """timm ResNet without pooling / FC head.

    forward(x (B,3,H,W) normalised) -> [c1 (B,C1,H/4,W/4), c2 (B,C2,H/8,W/8), c3 (B,C3,H/16,W/16), c4 (B,C4,H/32,W/32)]
    with C = (64, 128, 256, 512) * expansion * width (expansion 1 for resnet18/34, 4 for resnet50).
    The timm module is ``self.body`` (state-dict keys ``body.conv1.weight``, ``body.layer1.0.conv1.weight``, ...).
    """

    def __init__(self, name: str = "resnet18", width: float = 1.0, pretrained: bool = False) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {list(BACKBONES)}")
        if pretrained and width != 1.0:
            raise ValueError(f"ImageNet weights exist for the standard width only, not width={width}")
        timm = import_timm()
        planes = stage_planes(width)
        kwargs = {} if width == 1.0 else {"channels": planes, "stem_width": planes[0]}
        self.name = name
        self.body = timm.create_model(name, pretrained=pretrained, features_only=True, out_indices=(1, 2, 3, 4),
                                      **kwargs)
        if width != 1.0:
            self._narrow_stem(planes[0])
        self.channels: tuple[int, int, int, int] = tuple(self.body.feature_info.channels())  # type: ignore[assignment]
        expected = tuple(p * _EXPANSION[name] for p in planes)
        if self.channels != expected:  # a timm release that changed its ResNet layout
            raise RuntimeError(f"timm {name} stage channels {self.channels} != expected {expected}")

    def _narrow_stem(self, stem: int) -> None:
        # timm's 7x7 stem is 64 channels whatever `stem_width` says; the narrow variants (and their checkpoints)
        # use a stem as narrow as stage 1, so the stem and the first block's input are rebuilt at that width.
        body = self.body
        body.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        body.bn1 = nn.BatchNorm2d(stem)
        first = body.layer1[0]
        c_out = first.conv1.out_channels
        first.conv1 = nn.Conv2d(stem, c_out, first.conv1.kernel_size, stride=first.conv1.stride,
                                padding=first.conv1.padding, bias=False)
        if stem == (first.conv3 if hasattr(first, "conv3") else first.conv2).out_channels:
            first.downsample = None
        else:
            first.downsample = nn.Sequential(nn.Conv2d(stem, first.downsample[0].out_channels, 1, bias=False),
                                             nn.BatchNorm2d(first.downsample[0].out_channels))
        for m in (body.conv1, first.conv1, *(first.downsample or ())):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))
