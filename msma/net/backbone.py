"""ResNet-18/34/50 returning the four stage feature maps.

Written here rather than imported from torchvision: it keeps the install to torch alone, and the stages are plain
attributes (`layer1` ... `layer4`) whose outputs the fusion / attention blocks read directly. Parameter names follow
torchvision (`conv1`, `bn1`, `layer1.0.conv1`, ...) so an ImageNet state dict can be loaded with `strict=False`
when one is available (none is on the build machines).
"""

from __future__ import annotations

import torch
from torch import nn

# blocks per stage, block type
_SPECS: dict[str, tuple[tuple[int, int, int, int], str]] = {
    "resnet18": ((2, 2, 2, 2), "basic"),
    "resnet34": ((3, 4, 6, 3), "basic"),
    "resnet50": ((3, 4, 6, 3), "bottleneck"),
}


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = _conv3x3(c_in, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv, as torchvision and Deep3DFaceRecon)."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = _conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, c_out)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(_conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNetBackbone(nn.Module):
    """ResNet trunk without pooling / FC head.

    forward(x (B,3,H,W) normalised) -> [c1 (B,C1,H/4,W/4), c2 (B,C2,H/8,W/8), c3 (B,C3,H/16,W/16), c4 (B,C4,H/32,W/32)]
    with C = (64, 128, 256, 512) * expansion * width (expansion 1 for resnet18/34, 4 for resnet50).
    """

    def __init__(self, name: str = "resnet18", width: float = 1.0, zero_init_residual: bool = True) -> None:
        super().__init__()
        if name not in _SPECS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_SPECS)}")
        depths, kind = _SPECS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        planes = [max(8, int(round(p * width))) for p in (64, 128, 256, 512)]
        stem = planes[0]
        self.name = name
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        c_in = stem
        stages = []
        for i, (p, n) in enumerate(zip(planes, depths)):
            blocks = []
            for j in range(n):
                blocks.append(block(c_in, p, stride=2 if (j == 0 and i > 0) else 1))
                c_in = p * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.channels: tuple[int, int, int, int] = tuple(p * block.expansion for p in planes)  # type: ignore[assignment]
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Training from scratch (no ImageNet weights here): start each residual block as identity (Goyal et al. 2017).
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, C0, H/4, W/4)
        c1 = self.layer1(x)  # (B, C1, H/4, W/4)
        c2 = self.layer2(c1)  # (B, C2, H/8, W/8)
        c3 = self.layer3(c2)  # (B, C3, H/16, W/16)
        c4 = self.layer4(c3)  # (B, C4, H/32, W/32)
        return [c1, c2, c3, c4]
