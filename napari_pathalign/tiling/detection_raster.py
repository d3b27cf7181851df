"""Many detection outlines drawn as a lazily rendered RGBA pyramid, the way QuPath shows its detections.

A layer of 100,000 vector objects costs the GUI thread seconds to add and hundreds of milliseconds to
paint in software OpenGL; an image pyramid costs what the slide's own tiles cost: only the tiles on
screen are drawn, each in a few milliseconds. A tile draws every detection whose bounding box meets it:
as its outline (each edge sampled about once per tile pixel) where the detection is at least
``DOT_PX`` tile pixels wide, else as a dot at its centre, so a zoomed-out slide shows where the
cells are and what class they are. Everything is numpy: no Python loop over detections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DOT_PX = 8.0  # a detection narrower than this many tile pixels is a dot, not an outline (too small to read)
COARSEST_PX = 1024  # the pyramid goes down until the slide's longer side fits this many pixels


@dataclass
class DetectionRaster:
    """Closed rings of N detections in level-0 (x, y), each with its colour, on a ``height`` x ``width`` slide.

    Level-0 raster pixel (i, j) covers level-0 coordinates [j, j + 1) x [i, i + 1), as QuPath's pixels do;
    level k pixels are 2**k level-0 pixels wide.
    """

    xy: np.ndarray  # (V, 2) level-0 x, y of every ring vertex, ring after ring (kept as float32: 0.01 px at 100,000)
    starts: np.ndarray  # (N + 1,) int64: detection k's vertices are xy[starts[k]:starts[k + 1]]
    rgba: np.ndarray  # (N, 4) uint8 colour of each detection
    height: int  # level-0 slide height in pixels
    width: int  # level-0 slide width in pixels

    def __post_init__(self):
        self.xy = np.asarray(self.xy, np.float64)
        self.starts = np.asarray(self.starts, np.int64)
        self.rgba = np.asarray(self.rgba, np.uint8)
        n = len(self.starts) - 1
        if self.rgba.shape != (n, 4) or self.xy.ndim != 2 or self.xy.shape[1:] != (2,):
            raise ValueError(f"{n} detections need (N, 4) colours and (V, 2) vertices; got {self.rgba.shape}")
        counts = np.diff(self.starts)
        if n and counts.min() < 1:
            raise ValueError("every detection needs at least one vertex")
        first = self.starts[:-1]
        self.lo = np.minimum.reduceat(self.xy, first, axis=0) if n else np.zeros((0, 2))  # (N, 2) bbox min
        self.hi = np.maximum.reduceat(self.xy, first, axis=0) if n else np.zeros((0, 2))  # (N, 2) bbox max
        self.centre = np.add.reduceat(self.xy, first, axis=0) / counts[:, None] if n else np.zeros((0, 2))
        self.size = (self.hi - self.lo).max(1)  # (N,) the longer side of each bounding box
        after = np.arange(len(self.xy)) + 1  # the next vertex of the same ring, wrapping round
        after[self.starts[1:] - 1] = first
        # per vertex, in float32: where it is, its edge to the next one, its colour
        self.edge = (self.xy[after] - self.xy).astype(np.float32)
        self.xy = self.xy.astype(np.float32)
        self.vertex_rgba = np.repeat(self.rgba, counts, axis=0)

    @property
    def levels(self) -> int:
        """Pyramid levels: halving from level 0 until the longer side fits ``COARSEST_PX``."""
        return 1 + max(0, math.ceil(math.log2(max(self.height, self.width, 1) / COARSEST_PX)))

    def level_shape(self, level: int) -> tuple[int, int]:
        f = 2**level
        return -(-self.height // f), -(-self.width // f)

    def tile(self, level: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
        """RGBA (rows, cols, 4) of level ``level`` pixels rows[0]:rows[1], cols[0]:cols[1]; transparent where
        there is no detection."""
        f = float(2**level)
        (r0, r1), (c0, c1) = rows, cols
        out = np.zeros((r1 - r0, c1 - c0, 4), np.uint8)
        x0, y0, x1, y1 = c0 * f, r0 * f, c1 * f, r1 * f
        meets = (self.hi[:, 0] >= x0) & (self.lo[:, 0] < x1) & (self.hi[:, 1] >= y0) & (self.lo[:, 1] < y1)
        small = self.size < DOT_PX * f
        dots = np.flatnonzero(meets & small)
        if dots.size:
            self._dots(out, dots, x0, y0, f)
        outlined = meets & ~small
        if outlined.any():
            self._outlines(out, outlined, x0, y0, f)
        return out

    def _dots(self, out: np.ndarray, which: np.ndarray, x0: float, y0: float, f: float) -> None:
        """Each detection a pixel at its centre, a plus of 5 pixels when it is at least 2 tile pixels wide."""
        h, w = out.shape[:2]
        cx, cy = (self.centre[which, 0] - x0) / f, (self.centre[which, 1] - y0) / f
        wide = self.size[which] >= 2 * f
        for dx, dy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            col, row = np.floor(cx + dx).astype(np.int64), np.floor(cy + dy).astype(np.int64)
            keep = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (wide | (dx == dy == 0))
            out[row[keep], col[keep]] = self.rgba[which[keep]]

    def _outlines(self, out: np.ndarray, outlined: np.ndarray, x0: float, y0: float, f: float) -> None:
        """Every edge of the chosen detections, sampled about once per tile pixel along its longer axis (its end
        is the next edge's start), so an outline is 8-connected. An edge up to 1.5 pixels long is its first
        vertex alone: at the zooms where a view holds tens of thousands of outlines, that is most edges, and
        no sample is interpolated."""
        h, w = out.shape[:2]
        which = np.flatnonzero(outlined)
        counts = self.starts[which + 1] - self.starts[which]
        ramp = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        v = np.repeat(self.starts[which], counts) + ramp  # the vertices of the detections drawn as outlines
        p = (self.xy[v] - np.float32((x0, y0))) / np.float32(f)
        d = self.edge[v] / np.float32(f)
        steps = np.maximum(np.rint(np.abs(d).max(1)), 1).astype(np.int64)  # samples per edge: ~1 per pixel
        colour = self.vertex_rgba[v]
        long = np.flatnonzero(steps > 1)
        if long.size:
            n = steps[long]
            edge = np.repeat(long, n)
            t = ((np.arange(edge.size) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)).astype(np.float32)
            p = np.concatenate([p[steps == 1], p[edge] + d[edge] * t[:, None]])
            colour = np.concatenate([colour[steps == 1], colour[edge]])
        col, row = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
        keep = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        out[row[keep], col[keep]] = colour[keep]

    def pyramid(self) -> list["RasterLevel"]:
        """The levels as read-only arrays (H_k, W_k, 4) that draw the window napari asks for when it asks."""
        return [RasterLevel(self, level) for level in range(self.levels)]


class RasterLevel:
    """One pyramid level as an array napari can slice: indexing draws just the window asked for. (A dask array
    of tiles would cache them, but building its graph for a 40,000-pixel slide costs the worker 0.2 s.)"""

    def __init__(self, raster: DetectionRaster, level: int):
        self.raster, self.level = raster, level
        self.shape = (*raster.level_shape(level), 4)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (3 - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        picks, drop = [], []
        for axis, k in enumerate(key[:2]):
            n = self.shape[axis]
            if isinstance(k, slice):
                picks.append(np.arange(*k.indices(n)))
            else:
                i = int(k) + n if int(k) < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {int(k)} is out of bounds for axis {axis} with size {n}")
                picks.append(np.array([i]))
                drop.append(axis)
        rows, cols = picks
        if rows.size and cols.size:
            r0, c0 = int(rows.min()), int(cols.min())
            window = self.raster.tile(self.level, (r0, int(rows.max()) + 1), (c0, int(cols.max()) + 1))
            rsel, csel = _as_slice(rows - r0), _as_slice(cols - c0)
            if rsel is not None and csel is not None:
                window = window[rsel, csel]  # a view: napari's windows are contiguous
            else:
                window = window[np.ix_(rows - r0, cols - c0)]
        else:
            window = np.zeros((rows.size, cols.size, 4), np.uint8)
        out = window[:, :, key[2]]
        return out[tuple(0 if a in drop else slice(None) for a in (0, 1))]


def _as_slice(index: np.ndarray) -> slice | None:
    """An increasing, evenly stepped index as the slice that takes it; None for any other."""
    step = int(index[1] - index[0]) if index.size > 1 else 1
    if step > 0 and int(index[-1]) == int(index[0]) + step * (index.size - 1):
        return slice(int(index[0]), int(index[-1]) + 1, step)
    return None
