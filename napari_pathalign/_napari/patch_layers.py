"""Layer data for the tissue mask and the patch grid, aligned with the slide in world units."""

from __future__ import annotations

import numpy as np


def world_per_level0_px(slide) -> float:
    """µm per level-0 pixel when known; else the slide layer is in pixels (1)."""
    return slide.mpp or 1.0


def tissue_layer_data(slide, mask, name: str) -> tuple:
    s = world_per_level0_px(slide)
    dy, dx = mask.downsample
    labels = mask.mask.astype(np.uint8) + 2 * mask.ink.astype(np.uint8)  # 1 tissue, 2 ink
    kwargs = {
        "name": f"{name} tissue",
        "scale": (dy * s, dx * s),
        "opacity": 0.35,
        "metadata": {"tissue_fraction": mask.tissue_fraction},
    }
    return labels, kwargs, "labels"


def grid_layer_data(slide, grid, name: str) -> tuple:
    """Patch centres as square points of the patch's physical size (fast for 10,000 patches)."""
    s = world_per_level0_px(slide)
    centres = (grid.xy_level0[:, ::-1] + grid.size_level0 / 2.0) * s  # (N, 2) as (y, x) world
    kwargs = {
        "name": f"{name} patches",
        "symbol": "square",
        "size": grid.size_level0 * s,
        "face_color": "transparent",
        "border_color": "yellow",
        "border_width": 0.06,
        "features": {"tissue_fraction": grid.tissue_fraction},
        "metadata": {
            "patch_size": grid.patch_size,
            "target_mpp": grid.target_mpp,
            "level": grid.level,
            "note": grid.note,
        },
    }
    return centres, kwargs, "points"
