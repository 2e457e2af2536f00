"""HRNet-style cross-stage fusion: every stage map receives a resampled copy of every other stage map.

For target stage i and source stage j (HRNet `_make_fuse_layers`, as in the MSMA author's code):
  j < i (finer source):   (i - j) strided 3x3 convs; the intermediate ones keep the source width (+BN+ReLU),
                          the last maps to the target width (+BN)
  j > i (coarser source): 1x1 conv to the target width (+BN), then bilinear upsampling to the target size
  out_i = ReLU(x_i + sum_{j != i} T_ij(x_j))
Every output keeps its input's shape. Applied to stages 2-4 (the stages the heads read); stage 1 (H/4) is left out:
no head reads it and it would dominate the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _down_path(c_src: int, c_dst: int, steps: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(steps):
        last = k == steps - 1
        c_out = c_dst if last else c_src
        layers += [nn.Conv2d(c_src, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _up_path(c_src: int, c_dst: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_src, c_dst, 1, bias=False), nn.BatchNorm2d(c_dst))


class CrossStageFusion(nn.Module):
    """forward(list of n maps (B, C_k, H_k, W_k), each stage half the size of the previous) -> list of the same shapes.

    `transforms[i][j]` resamples stage j into stage i (`nn.Identity` on the diagonal, never called).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.channels = tuple(int(c) for c in channels)
        n = len(self.channels)
        if n < 2:
            raise ValueError("fusion needs at least two stages")
        rows = []
        for i in range(n):
            row: list[nn.Module] = []
            for j in range(n):
                if j < i:
                    row.append(_down_path(self.channels[j], self.channels[i], i - j))
                elif j > i:
                    row.append(_up_path(self.channels[j], self.channels[i]))
                else:
                    row.append(nn.Identity())
            rows.append(nn.ModuleList(row))
        self.transforms = nn.ModuleList(rows)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} stage maps, got {len(feats)}")
        out = []
        for i, target in enumerate(feats):
            size = target.shape[-2:]
            y = target
            for j, source in enumerate(feats):
                if j == i:
                    continue
                z = self.transforms[i][j](source)  # (B, C_i, h, w)
                if z.shape[-2:] != size:  # coarser source, or odd sizes after strided convs
                    z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
                y = y + z
            out.append(self.relu(y))  # (B, C_i, H_i, W_i)
        return out
