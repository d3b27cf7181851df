"""A grid of square patches over the tissue, at a target resolution (µm per pixel)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_pathalign.core.grid_config import DEFAULT_GRID
from napari_pathalign.tiling.tissue import TissueMask


@dataclass
class PatchGrid:
    """Where the patches are: top-left corners in level-0 pixels, all of one size."""

    xy_level0: np.ndarray  # (N, 2) int64, (x, y) top-left corner of each patch in level-0 pixels
    size_level0: int  # patch side in level-0 pixels
    level: int  # pyramid level the pixels are read from
    read_size: int  # patch side in pixels of ``level`` (resized to ``patch_size`` after reading)
    patch_size: int  # patch side in pixels as the encoder sees it
    target_mpp: float | None  # µm per patch pixel; None when the slide has no mpp (level-0 pixels)
    tissue_fraction: np.ndarray  # (N,) float32, fraction of each patch covered by tissue
    n_candidates: int  # tissue patches before the cap to max_patches
    note: str = ""  # what the user should know (no mpp, capped, ...)

    def __len__(self) -> int:
        return len(self.xy_level0)


def patch_grid(
    slide,
    mask: TissueMask,
    patch_size: int = DEFAULT_GRID.patch_size,
    target_mpp: float | None = DEFAULT_GRID.target_mpp,
    max_patches: int = DEFAULT_GRID.max_patches,
    min_tissue: float = DEFAULT_GRID.min_tissue,
    seed: int = DEFAULT_GRID.seed,
) -> PatchGrid:
    """Non-overlapping patches with at least ``min_tissue`` tissue, at most ``max_patches`` of them.

    Pixels are read at the coarsest level that still has at least the target resolution, then
    resized. More candidates than ``max_patches``: an evenly spread subsample along a Z-order
    (Morton) curve, so every region of the tissue keeps its share; ``seed`` shifts the picks.
    """
    if patch_size < 8:
        raise ValueError(f"patch_size must be at least 8 pixels, got {patch_size!r}")
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue is a fraction in [0, 1], got {min_tissue!r}")
    if max_patches < 1:
        raise ValueError(f"max_patches must be positive, got {max_patches!r}")
    target_mpp, size_level0, level, read_size, notes = read_plan(slide, patch_size, target_mpp)
    h0, w0 = slide.shape_level0
    rows, cols = h0 // size_level0, w0 // size_level0
    frac = _cell_fractions(mask, rows, cols, size_level0)  # (rows, cols)
    r, c = np.nonzero(frac >= max(min_tissue, 1e-9))
    n_candidates = len(r)
    if n_candidates > max_patches:
        order = np.argsort(_morton(r, c), kind="stable")
        offset = np.random.default_rng(seed).uniform(0, n_candidates / max_patches)
        picks = order[np.floor(offset + np.arange(max_patches) * n_candidates / max_patches).astype(np.int64)]
        r, c = r[np.sort(picks)], c[np.sort(picks)]
        notes.append(f"{n_candidates} tissue patches, {max_patches} kept (spatially even subsample)")
    xy = np.stack([c, r], axis=1).astype(np.int64) * size_level0  # (N, 2) as (x, y)
    return PatchGrid(
        xy,
        size_level0,
        level,
        read_size,
        patch_size,
        target_mpp,
        frac[r, c].astype(np.float32),
        n_candidates,
        "; ".join(notes),
    )


def read_plan(slide, patch_size: int, target_mpp: float | None) -> tuple[float | None, int, int, int, list[str]]:
    """Where a grid's pixels come from: (target_mpp or None, patch side in level-0 pixels, level,
    patch side read at that level, notes). Needs only the slide's metadata, no pixels."""
    notes = []
    if slide.mpp is None or target_mpp is None:
        if target_mpp is not None:
            notes.append(
                (
                    f"slide has no microns-per-pixel metadata ({slide.mpp_source}); patches are {patch_size} level-0 "
                    f"pixels, not {target_mpp} µm/px"
                )
            )
        return None, patch_size, 0, patch_size, notes
    if target_mpp <= 0:
        raise ValueError(f"target_mpp must be positive µm per pixel, got {target_mpp!r}")
    size_level0 = max(1, round(patch_size * target_mpp / slide.mpp))
    want = target_mpp / slide.mpp * 1.01  # a level up to 1% coarser than asked still counts
    level = max(k for k, ds in enumerate(slide.downsamples) if k == 0 or ds <= want)
    if slide.mpp > target_mpp * 1.01:
        notes.append(
            (
                f"the slide's finest level is {slide.mpp:.3g} µm/px, coarser than the {target_mpp} µm/px asked: "
                "patches are upsampled"
            )
        )
    return target_mpp, size_level0, level, max(1, round(size_level0 / slide.downsamples[level])), notes


def _cell_fractions(mask: TissueMask, rows: int, cols: int, size_level0: int) -> np.ndarray:
    """Tissue fraction of every grid cell, by exact area sums over the mask (integral image)."""
    m = mask.mask.astype(np.float64)
    integral = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    integral[1:, 1:] = m.cumsum(0).cumsum(1)
    dy, dx = mask.downsample
    ys = np.clip(np.round(np.arange(rows + 1) * size_level0 / dy).astype(int), 0, m.shape[0])
    xs = np.clip(np.round(np.arange(cols + 1) * size_level0 / dx).astype(int), 0, m.shape[1])
    area = np.maximum((ys[1:] - ys[:-1])[:, None] * (xs[1:] - xs[:-1])[None, :], 1)
    sums = (
        integral[ys[1:]][:, xs[1:]]
        - integral[ys[:-1]][:, xs[1:]]
        - integral[ys[1:]][:, xs[:-1]]
        + integral[ys[:-1]][:, xs[:-1]]
    )
    return sums / area


def _morton(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Z-order index interleaving the bits of row and column: nearby cells get nearby indices."""
    code = np.zeros(len(r), dtype=np.uint64)
    r, c = r.astype(np.uint64), c.astype(np.uint64)
    for bit in range(21):
        code |= ((r >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit + 1)
        code |= ((c >> np.uint64(bit)) & np.uint64(1)) << np.uint64(2 * bit)
    return code
