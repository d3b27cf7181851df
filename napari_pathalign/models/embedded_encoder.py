"""Our small patch encoder: a compact residual CNN sized for >= 250 patches/s on 2 CPU cores.

It reads patches at about 1 µm per pixel (a 224-px patch at 0.5 µm/px, resized to 112 px): the
scale of the tiles it was trained on (PatchCamelyon at 0.97 µm/px, Kather at 0.495 µm/px resized).
"""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (cheap on CPUs); residual when the shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.residual = stride == 1 and c_in == c_out
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.act(x + y if self.residual else y)


class EmbeddedEncoder(nn.Module):
    """(B, 3, S, S) normalised RGB (S = 112 in use) -> (B, 384) features."""

    dim = 384

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256, 384), depth: int = 2):
        super().__init__()
        # a 4x4 patchify stem: full-resolution convolutions are what a CPU cannot afford
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=4, bias=False), nn.BatchNorm2d(widths[0]), nn.GELU())
        stages = []
        for a, b in zip(widths[:-1], widths[1:]):
            stages += [_Block(a, a, 1) for _ in range(depth - 1)] + [_Block(a, b, 2)]
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, S/32, S/32)
        return self.norm(x.mean(dim=(2, 3)))  # (B, C)
