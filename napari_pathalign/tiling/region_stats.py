"""Measurements of a drawn region or line on a slide: length in µm, area in mm², the share that is tissue,
and, once the slide is analysed, what the model sees in it: its patches' zero-shot classes and heatmap values.

A patch belongs to a region when its centre lies inside the exterior and outside every hole (the rule the
workspace uses for a region's analysis, ``engine/regions.py: patches_in_polygon``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from napari_pathalign.core.heatmap import Heatmap
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
    patches: int | None = None  # analysed patches whose centre lies in the region (None: slide not analysed)
    class_fractions: dict[str, float] = field(default_factory=dict)  # class -> mean probability over them
    heatmap: str = ""  # the label of the heatmap whose values follow ('' when none was read)
    heatmap_mean: float = math.nan  # mean of the heatmap over the region's patches (NaN: none or no patch)
    heatmap_max: float = math.nan  # its maximum there


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


def region_patches(rings_level0: list, xy_level0: np.ndarray, size_level0: int) -> np.ndarray:
    """Indices of the patches (top-left ``xy_level0`` (N, 2), side ``size_level0``) whose centre lies inside
    the region [exterior, holes...] of level-0 (x, y) rings: in the exterior, in none of its holes."""
    from skimage.measure import points_in_poly

    centres = np.asarray(xy_level0, np.float64).reshape(-1, 2) + size_level0 / 2.0
    inside = points_in_poly(centres, np.asarray(rings_level0[0], np.float64))
    for hole in rings_level0[1:]:
        inside &= ~points_in_poly(centres, np.asarray(hole, np.float64))
    return np.flatnonzero(inside)


def with_model_values(
    m: Measurement, rings_level0: list, class_maps: dict[str, Heatmap] | None = None, heatmap: Heatmap | None = None
) -> Measurement:
    """``m`` with the model's view of its region: each class's share of it, the mean over its patches of the
    per-patch class probability (``class_maps``: class -> per-patch probability, e.g. the model's class map of the
    slide's organ; the expected fraction of the region in that class), and the mean and max of ``heatmap`` over
    its patches (its raw values, before any display normalisation). Lines are returned unchanged."""
    if m.kind != "region" or (not class_maps and heatmap is None):
        return m
    values = {}
    if class_maps:
        names = list(class_maps)
        first = class_maps[names[0]]
        index = region_patches(rings_level0, first.xy_level0, first.size_level0)
        share = [float(class_maps[c].raw_values[index].mean()) if len(index) else math.nan for c in names]
        values.update(patches=len(index), class_fractions=dict(zip(names, share)))
    if heatmap is not None:
        index = region_patches(rings_level0, heatmap.xy_level0, heatmap.size_level0)
        v = heatmap.raw_values[index].astype(np.float64)
        v = v[np.isfinite(v)]
        values.update(
            patches=len(index),
            heatmap=heatmap.label,
            heatmap_mean=float(v.mean()) if len(v) else math.nan,
            heatmap_max=float(v.max()) if len(v) else math.nan,
        )
    return replace(m, **values)
