"""Our small patch encoder: a compact CNN sized for >= 250 patches/s on 2 CPU cores at 224 px."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise-separable stride-2 block: cheap on CPUs, enough capacity for tissue texture."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=2, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    )


class EmbeddedEncoder(nn.Module):
    """(B, 3, 224, 224) normalised RGB -> (B, 384) features."""

    dim = 384

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256, 384)):
        super().__init__()
        # a 4x4 patchify stem: the full-resolution convolutions are what a CPU cannot afford
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=4, bias=False), nn.BatchNorm2d(widths[0]), nn.GELU())
        self.stages = nn.Sequential(*[_block(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.norm = nn.LayerNorm(widths[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, 4, 4)
        return self.norm(x.mean(dim=(2, 3)))  # (B, C)
