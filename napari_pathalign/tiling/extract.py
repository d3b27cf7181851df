"""Tile-aligned patch extraction: every stored tile a pass needs is decoded exactly once.

Patches are visited row band by row band; the tiles they touch are decoded in a thread pool,
ahead of the consumer (decoding overlaps encoding), and dropped as soon as the last patch that
needs them is assembled, so memory stays at about two rows of tiles plus the prefetch window.

When patches are read at 2, 4 or 8 times their size (a 0.25 µm/px scan embedded at 0.5 µm/px)
and the tiles are JPEG, they are decoded straight to the smaller size by the codec's scaled
IDCT, the way libvips shrinks on load: less work than the full decode alone, where a full decode
plus a resize pass cost about twice the decode (see benchmarks/bench_extract.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from napari_pathalign.io.tiles import WHITE, paste_tiles
from napari_pathalign.tiling.grid import PatchGrid


def extract_patches(
    slide, grid: PatchGrid, batch_size: int = 64, workers: int | None = None, prefetch: int = 2
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
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
    f = codec_scale(
        slide, grid.level, grid.read_size, grid.patch_size
    )  # tiles come decoded at 1/f; patches are assembled at that scale
    size, scaled_h, scaled_w = round(grid.read_size / f), -(-H // f), -(-W // f)
    sth, stw = th // f, tw // f  # tile side in those pixels
    order = np.lexsort((xy[:, 0], xy[:, 1]))  # row-major: neighbours share tiles
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]

    tile_rc = _tile_plan(xy // f, size, scaled_h, scaled_w, sth, stw)  # (N, K, 2) tiles under each patch, -1: none

    def tiles_of(i: int) -> list[tuple[int, int]]:
        """The stored tiles under patch i, in the (possibly 1/f) pixels it is assembled from."""
        return [(int(r), int(c)) for r, c in tile_rc[i] if r >= 0]

    # which tiles each batch needs, and the last batch that needs each: numpy over all patches at once
    # (a Python loop over 10,240 patches here held the GIL long enough to freeze the GUI)
    batch_tiles = [_unique_tiles(tile_rc[b]) for b in batches]
    last_use = {t: k for k, ts in enumerate(batch_tiles) for t in ts}
    workers = workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="pathalign-decode")
    # patches are assembled and resized in their own threads (numpy and PIL release the GIL); a
    # separate pool, because an assembler waits on tile futures and must never starve the decoders
    assemblers = ThreadPoolExecutor(workers, thread_name_prefix="pathalign-assemble")
    pending: dict[tuple[int, int], Future] = {}  # tile -> the job decoding it (a dict of tiles)

    def decode(ts: list[tuple[int, int]]) -> dict:
        if f > 1:
            return {t: slide.read_tile_scaled(grid.level, *t, f) for t in ts}
        return {t: slide.read_tile(grid.level, *t) for t in ts}

    submitted = 0
    try:
        for k, batch in enumerate(batches):
            while submitted < len(batches) and submitted <= k + prefetch:
                new = [t for t in batch_tiles[submitted] if t not in pending]
                step = -(-len(new) // (2 * workers)) if new else 1  # a few decode jobs per batch, not one per tile
                for a in range(0, len(new), step):
                    job = pool.submit(decode, new[a : a + step])
                    for t in new[a : a + step]:
                        pending[t] = job
                submitted += 1
            out = np.empty((len(batch), grid.patch_size, grid.patch_size, 3), np.uint8)

            def make(js: range) -> None:
                for j in js:
                    i = batch[j]
                    tiles = {t: pending[t].result()[t] for t in tiles_of(i)}
                    x, y = (int(v) for v in xy[i] // f)
                    if size != grid.patch_size:
                        out[j] = _resize(_assemble(tiles, x, y, size, sth, stw), grid.patch_size)
                        continue
                    if x < 0 or y < 0 or x + size > scaled_w or y + size > scaled_h:
                        out[j] = WHITE  # leaves the slide: white beyond its edge
                    paste_tiles(out[j], x, y, tiles, sth, stw)

            chunk = -(-len(batch) // (2 * workers))  # a few jobs per batch: futures cost more than pastes
            for job in [
                assemblers.submit(make, range(a, min(a + chunk, len(batch)))) for a in range(0, len(batch), chunk)
            ]:
                job.result()
            for t in batch_tiles[k]:
                if last_use[t] == k:
                    del pending[t]
            yield out, batch.copy()
    finally:
        for future in pending.values():
            future.cancel()
        assemblers.shutdown(wait=True)
        pool.shutdown(wait=True)


def _tile_plan(xy: np.ndarray, size: int, h: int, w: int, th: int, tw: int) -> np.ndarray:
    """(N, K, 2) (row, column) of the stored tiles under each patch of side ``size`` at top-left ``xy``
    (N, 2) on an (h, w) level of (th, tw) tiles; rows of -1 pad patches over fewer tiles (or none: off
    the slide)."""
    x, y = xy[:, 0], xy[:, 1]
    r1, c1 = np.minimum(y + size, h) - 1, np.minimum(x + size, w) - 1  # last pixel inside the level
    inside = (r1 >= 0) & (c1 >= 0)
    r0, c0 = np.maximum(y, 0) // th, np.maximum(x, 0) // tw
    nr, nc = np.where(inside, r1 // th - r0 + 1, 0), np.where(inside, c1 // tw - c0 + 1, 0)  # (N,)
    dr, dc = np.arange(max(int(nr.max(initial=0)), 1)), np.arange(max(int(nc.max(initial=0)), 1))
    rr = np.broadcast_to(r0[:, None, None] + dr[None, :, None], (len(xy), len(dr), len(dc)))
    cc = np.broadcast_to(c0[:, None, None] + dc[None, None, :], rr.shape)
    ok = (dr[None, :, None] < nr[:, None, None]) & (dc[None, None, :] < nc[:, None, None])
    out = np.stack([np.where(ok, rr, -1), np.where(ok, cc, -1)], -1)  # (N, R, C, 2)
    return out.reshape(len(xy), -1, 2)


def _unique_tiles(tile_rc: np.ndarray) -> list[tuple[int, int]]:
    """Sorted distinct (row, column) of a (B, K, 2) plan, without the -1 padding."""
    rc = tile_rc.reshape(-1, 2)
    rc = np.unique(rc[rc[:, 0] >= 0], axis=0)  # sorted by row, then column
    return [(int(r), int(c)) for r, c in rc]


def codec_scale(slide, level: int, read_size: int, patch_size: int) -> int:
    """The largest of 8, 4, 2 the tiles of ``level`` can be decoded smaller by and still give
    at least 98% of the patch size (a 444-px read for 224 px, mpp 0.2525, decodes at 222 px and is
    upsampled 1%); 1 where none can. Patch corners snap to the scaled pixel grid (< 1 output pixel).
    """
    for f in (8, 4, 2):
        if read_size >= 0.98 * f * patch_size:
            th, tw = slide.tile_shape(level)
            if th % f == 0 and tw % f == 0 and slide.can_read_scaled(level, f):
                return f
    return 1


def _assemble(tiles: dict, x: int, y: int, size: int, th: int, tw: int) -> np.ndarray:
    """One patch (size, size, 3) from decoded tiles; white where it leaves the slide."""
    out = np.full((size, size, 3), WHITE, np.uint8)
    paste_tiles(out, x, y, tiles, th, tw)
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
