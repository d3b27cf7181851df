"""How patches are laid out on a slide: the one place that holds the grid's defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridConfig:
    """How patches are laid out (see ``tiling.grid.patch_grid``)."""

    patch_size: int = 224  # pixels per patch side at target_mpp
    target_mpp: float = 0.5  # µm per pixel (0.5 ~ 20x)
    max_patches: int = 10240  # cap; above it a spatially even subsample
    min_tissue: float = 0.5  # minimum tissue fraction of a patch
    seed: int = 0  # subsample seed


DEFAULT_GRID = GridConfig()
