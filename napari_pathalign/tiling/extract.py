"""Tile-aligned patch extraction: every stored tile a pass needs is decoded exactly once.

Patches are visited row band by row band; the tiles they touch are decoded in a thread pool,
ahead of the consumer (decoding overlaps encoding), and dropped as soon as the last patch that
needs them is assembled, so memory stays at about two rows of tiles plus the prefetch window.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from napari_pathalign.io.tiles import paste_tiles
from napari_pathalign.tiling.grid import PatchGrid


def extract_patches(slide, grid: PatchGrid, batch_size: int = 64, workers: int | None = None, prefetch: int = 2) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(patches uint8 (B, P, P, 3), index (B,))``; ``index`` points into ``grid.xy_level0``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    n = len(grid)
    if n == 0:
        return
    ds = slide.downsamples[grid.level]
    th, tw = slide.tile_shape(grid.level)
    H, W = slide.level_shapes[grid.level]
    xy = np.round(grid.xy_level0 / ds).astype(np.int64)  # (N, 2) top-left at grid.level
    order = np.lexsort((xy[:, 0], xy[:, 1]))  # row-major: neighbours share tiles
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]

    def tiles_of(i: int) -> list[tuple[int, int]]:
        x, y = xy[i]
        r0, r1 = max(y, 0) // th, min(y + grid.read_size, H) - 1
        c0, c1 = max(x, 0) // tw, min(x + grid.read_size, W) - 1
        return [(r, c) for r in range(r0, r1 // th + 1) for c in range(c0, c1 // tw + 1)] if r1 >= 0 and c1 >= 0 else []

    batch_tiles = [sorted({t for i in b for t in tiles_of(i)}) for b in batches]
    last_use = {t: k for k, ts in enumerate(batch_tiles) for t in ts}
    workers = workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="pathalign-decode")
    # patches are assembled and resized in their own threads (numpy and PIL release the GIL); a
    # separate pool, because an assembler waits on tile futures and must never starve the decoders
    assemblers = ThreadPoolExecutor(workers, thread_name_prefix="pathalign-assemble")
    pending: dict[tuple[int, int], Future] = {}
    submitted = 0
    try:
        for k, batch in enumerate(batches):
            while submitted < len(batches) and submitted <= k + prefetch:
                for t in batch_tiles[submitted]:
                    if t not in pending:
                        pending[t] = pool.submit(slide.read_tile, grid.level, *t)
                submitted += 1
            out = np.empty((len(batch), grid.patch_size, grid.patch_size, 3), np.uint8)

            def make(j: int, i: int) -> None:
                tiles = {t: pending[t].result() for t in tiles_of(i)}
                out[j] = _resize(_assemble(tiles, xy[i], grid.read_size, th, tw), grid.patch_size)

            for job in [assemblers.submit(make, j, i) for j, i in enumerate(batch)]:
                job.result()
            for t in batch_tiles[k]:
                if last_use[t] == k:
                    del pending[t]
            yield out, batch.copy()
    finally:
        for f in pending.values():
            f.cancel()
        assemblers.shutdown(wait=True)
        pool.shutdown(wait=True)


def _assemble(tiles: dict, xy: np.ndarray, size: int, th: int, tw: int) -> np.ndarray:
    """One patch (size, size, 3) from decoded tiles; white where it leaves the slide."""
    out = np.full((size, size, 3), 255, np.uint8)
    paste_tiles(out, int(xy[0]), int(xy[1]), tiles, th, tw)
    return out


def _resize(patch: np.ndarray, size: int) -> np.ndarray:
    """Area-average when shrinking, bicubic when enlarging.

    Whole-number factors (448 -> 224 at 0.25 -> 0.5 µm/px) use PIL's ``reduce``: a box average
    4x faster than ``resize`` (measured 0.28 vs 1.19 ms), the difference between meeting the
    decode limit or not.
    """
    if patch.shape[0] == size:
        return patch
    from PIL import Image

    if patch.shape[0] % size == 0:
        return np.asarray(Image.fromarray(patch).reduce(patch.shape[0] // size))
    method = Image.Resampling.BOX if patch.shape[0] > size else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(patch).resize((size, size), method))
