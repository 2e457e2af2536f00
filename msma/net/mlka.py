"""MLKA: multi-scale large-kernel attention (MAN, Wang et al. 2022), as the MSMA author applies it to stages 2-4.

  shortcut = x
  x = LayerNorm_channels_first(x)
  a, g = split(Conv1x1(x) -> 2C)                   # a: attention features, g: gate
  a1, a2, a3 = split a into 3 channel groups
  a_k = LKA_k(a_k) * DW_k(a_k)  for k in (3, 5, 7), where
        LKA_3 = DW3 -> DW5 (dilation 2) -> 1x1,  DW_3 = depth-wise 3x3
        LKA_5 = DW5 -> DW7 (dilation 3) -> 1x1,  DW_5 = depth-wise 5x5
        LKA_7 = DW7 -> DW9 (dilation 4) -> 1x1,  DW_7 = depth-wise 7x7
  y = Conv1x1(g * cat(a1, a2, a3))
  return y * scale + shortcut                      # scale: learnable per channel, zero-initialised (MAN),
                                                   # so the block starts as the identity
The author pads the channel count to a multiple of 3 with extra 1x1 convs (513/1026/2049); here the three groups
simply take C//3, C//3 and the remainder, which needs no extra layers.

Dilations scaled to the map (``map_size``): the paper's dilations assume 224 px input (stage maps 28/14/7). On smaller
maps a dilated tap mostly lands in the zero padding (the 9x9 dilation-4 kernel spans 33 px); with ``map_size`` given
each dilation is lowered until its kernel spans at most the map, down to 1 (weights are unchanged: dilation has no
parameters, so checkpoints load either way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W) ("channels_first" LayerNorm of ConvNeXt / MAN)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm over a channels-last view: fused, and autocast runs it in float32 (a hand-written
        # mean/var in float16 overflows once activations pass ~256).
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)  # (B, H, W, C)
        return y.permute(0, 3, 1, 2)


def _dw(channels: int, kernel: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel, padding=(kernel // 2) * dilation, dilation=dilation, groups=channels)


class _LargeKernelBranch(nn.Module):
    """One channel group: LKA (dw k -> dilated dw -> 1x1) multiplied by a plain dw k branch."""

    def __init__(self, channels: int, kernel: int, dilated_kernel: int, dilation: int) -> None:
        super().__init__()
        self.lka = nn.Sequential(
            _dw(channels, kernel),
            _dw(channels, dilated_kernel, dilation),
            nn.Conv2d(channels, channels, 1),
        )
        self.local = _dw(channels, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lka(x) * self.local(x)


# (kernel, dilated kernel, dilation) per channel group
MLKA_BRANCHES: tuple[tuple[int, int, int], ...] = ((3, 5, 2), (5, 7, 3), (7, 9, 4))


def scaled_dilation(dilated_kernel: int, dilation: int, map_size: int | None) -> int:
    """The largest dilation <= ``dilation`` whose kernel extent (k - 1) * d + 1 fits in ``map_size`` (at least 1)."""
    if map_size is None:
        return dilation
    return max(1, min(dilation, (int(map_size) - 1) // (dilated_kernel - 1)))


class MLKA(nn.Module):
    """forward(x (B, C, H, W)) -> (B, C, H, W). Needs C >= 3. ``map_size``: the H (= W) the block is trained on,
    to scale the dilations (None: the paper's fixed dilations)."""

    def __init__(self, channels: int, scale_init: float = 0.0, map_size: int | None = None) -> None:
        super().__init__()
        if channels < 3:
            raise ValueError(f"MLKA needs at least 3 channels, got {channels}")
        third = channels // 3
        self.groups = (third, third, channels - 2 * third)
        self.norm = LayerNorm2d(channels)
        self.proj_in = nn.Conv2d(channels, 2 * channels, 1)
        self.dilations = tuple(scaled_dilation(kd, d, map_size) for _, kd, d in MLKA_BRANCHES)
        self.branches = nn.ModuleList(
            _LargeKernelBranch(c, k, kd, d) for c, (k, kd, _), d in zip(self.groups, MLKA_BRANCHES, self.dilations)
        )
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), float(scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        a, gate = self.proj_in(self.norm(x)).chunk(2, dim=1)  # (B, C, H, W) each
        parts = torch.split(a, self.groups, dim=1)
        a = torch.cat([branch(p) for branch, p in zip(self.branches, parts)], dim=1)  # (B, C, H, W)
        return self.proj_out(gate * a) * self.scale + shortcut
