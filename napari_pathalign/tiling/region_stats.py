"""Measurements of a drawn region or line on a slide: length in µm, area in mm², the share that is tissue."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_pathalign.core.polygons import path_length, polygon_area
from napari_pathalign.tiling.tissue import TissueMask


@dataclass
class Measurement:
    """One shape's measurements; NaN where a value does not apply or cannot be known (a slide without µm/px)."""

    shape: int  # the shape's index in its layer
    kind: str  # 'line' (lines and paths) or 'region' (polygons, rectangles, ellipses)
    classification: str  # the shape's class, '' when it has none
    length_um: float  # a line's length, a region's perimeter
    area_mm2: float  # a region's area, holes taken out
    tissue_fraction: float  # share of a region's area the tissue detector calls tissue, 0-1 (NaN: not computed)


def measure(
    shape: int,
    kind: str,
    rings_level0: list,
    mpp: float | None,
    classification: str = "",
    mask: TissueMask | None = None,
) -> Measurement:
    """``rings_level0``: a line's vertices as one (V, 2) array, or a region's [exterior, holes...] of level-0 (x, y)."""
    if kind not in ("line", "region"):
        raise ValueError(f"kind must be 'line' or 'region', got {kind!r}")
    um = mpp if mpp else math.nan  # no µm/px: no lengths in µm, never a guess
    outline = np.asarray(rings_level0[0], float)
    if kind == "line":
        return Measurement(shape, kind, classification, path_length(outline) * um, math.nan, math.nan)
    closed = np.vstack([outline, outline[:1]])
    area_mm2 = polygon_area(rings_level0) * um * um / 1e6
    fraction = tissue_fraction(rings_level0, mask) if mask is not None else math.nan
    return Measurement(shape, kind, classification, path_length(closed) * um, area_mm2, fraction)


def tissue_fraction(rings_level0: list, mask: TissueMask) -> float:
    """Share of the region's mask pixels that are tissue (a region within one mask pixel: that pixel)."""
    from skimage.draw import polygon as fill

    dy, dx = mask.downsample
    inside = np.zeros(mask.mask.shape, bool)
    for k, ring in enumerate(rings_level0):
        ring = np.asarray(ring, float)
        rr, cc = fill(ring[:, 1] / dy - 0.5, ring[:, 0] / dx - 0.5, shape=mask.mask.shape)
        inside[rr, cc] = k == 0  # the exterior in, its holes out
    if not inside.any():
        x, y = np.asarray(rings_level0[0], float).mean(0)
        r = int(np.clip(y / dy, 0, mask.mask.shape[0] - 1))
        c = int(np.clip(x / dx, 0, mask.mask.shape[1] - 1))
        return float(mask.mask[r, c])
    return float(mask.mask[inside].mean())
