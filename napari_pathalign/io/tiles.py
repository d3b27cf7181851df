"""Tiled pyramid levels, a bounded cache of decoded tiles, and region assembly.

Every backend (TIFF, DICOM) exposes its stored levels as ``TileLevel`` objects that decode one
stored tile at a time. ``TileReader`` turns any of them into regions (``read_region``) and into
dask arrays whose chunks are exactly the stored tiles, so the display and the pipeline decode the
same pixels through the same cache.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from itertools import count

import numpy as np

WHITE = 255  # beyond the slide's edge and in sparse (never scanned) tiles
_names = count()
_in_pool = threading.local()  # set in decode threads: nested reads (derived levels) run serially there


def paste_tiles(out: np.ndarray, x: int, y: int, tiles: dict, th: int, tw: int) -> None:
    """Copy into ``out`` (top-left at level pixel (x, y)) the parts of decoded tiles it overlaps.

    ``tiles`` maps (row, col) to a tile cropped to the level's bounds, so nothing is written
    beyond the slide's edge and ``out`` keeps its fill there.
    """
    h, w = out.shape[:2]
    for (r, c), tile in tiles.items():
        ty, tx = r * th, c * tw
        y0, y1 = max(y, ty), min(y + h, ty + tile.shape[0])
        x0, x1 = max(x, tx), min(x + w, tx + tile.shape[1])
        if y0 < y1 and x0 < x1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - ty : y1 - ty, x0 - tx : x1 - tx]


class TileLevel(ABC):
    """One pyramid level stored as a grid of tiles."""

    shape: tuple[int, int]  # (height, width) of the level in pixels
    tile_shape: tuple[int, int]  # (height, width) of one stored tile
    cached = False  # keep decoded tiles in the reader's LRU cache

    @property
    def grid(self) -> tuple[int, int]:
        """Number of tile (rows, columns)."""
        return (-(-self.shape[0] // self.tile_shape[0]), -(-self.shape[1] // self.tile_shape[1]))

    @abstractmethod
    def decode_tile(self, row: int, col: int) -> np.ndarray:
        """Decode one stored tile as uint8 (h, w, 3); edge tiles may be padded or already cropped."""

    def decode_tile_scaled(self, row: int, col: int, factor: int) -> np.ndarray | None:
        """The tile at 1/``factor`` of its size, straight from the codec, or None where the codec can't."""
        return None

    def busiest_tile(self) -> tuple[int, int]:
        """(row, col) of a tile likely to hold tissue, to probe the codec on: the middle one here."""
        rows, cols = self.grid
        return rows // 2, cols // 2

    def tile_bounds(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1) of a tile in level pixels, cropped to the level."""
        th, tw = self.tile_shape
        y0, x0 = row * th, col * tw
        return y0, x0, min(y0 + th, self.shape[0]), min(x0 + tw, self.shape[1])


class DerivedLevel(TileLevel):
    """A level built lazily by 2x2 box-averaging a finer level: for files without a pyramid."""

    cached = True  # each tile costs 4 finer tiles: compute it once

    def __init__(self, reader: TileReader, parent: int):
        self._reader = reader
        self._parent = parent
        ph, pw = reader.levels[parent].shape
        self.shape = (ph // 2, pw // 2)
        self.tile_shape = reader.levels[parent].tile_shape

    def decode_tile(self, row: int, col: int) -> np.ndarray:
        y0, x0, y1, x1 = self.tile_bounds(row, col)
        from PIL import Image

        src = self._reader.read(self._parent, 2 * x0, 2 * y0, 2 * (x1 - x0), 2 * (y1 - y0))
        # PIL's reduce is the exact rounded 2x2 mean, (a + b + c + d + 2) // 4, 20x faster than numpy
        return np.asarray(Image.fromarray(src).reduce(2))  # (h, w, 3)


class TileReader:
    """Reads regions of tiled levels, decoding the tiles a region touches in a thread pool.

    The codecs release the GIL, so a region's tiles decode in parallel. Stored tiles are not
    cached: measured on a 100k x 80k JPEG pyramid, keeping decoded tiles made random reads 40%
    slower (fresh 200 kB allocations, page faults and TLB shoot-downs on eviction), while napari
    keeps its own chunk cache for display. Derived levels, costly to build, are cached (LRU).
    """

    def __init__(self, levels: list[TileLevel], cache_bytes: int = 256 * 2**20, workers: int | None = None):
        self.levels = list(levels)
        self.cache_bytes = cache_bytes
        self.tiles_decoded = 0  # how many stored tiles were decoded (a cache miss each)
        # one LRU per level; eviction starts at the finest level: a coarse tile stands for many fine
        # ones, and evicting it first would rebuild the whole chain below it on the next overview
        self._cache: dict[int, OrderedDict[tuple[int, int], np.ndarray]] = {}
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._scalable: dict[tuple[int, int], bool] = {}
        self._workers = workers or min(8, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        # the viewer's reads (as_dask chunks) from a remote source: None waits as long as the source takes
        self.display_wait_s: float | None = None  # the longest the viewer waits for one tile; then it is drawn blank
        self.on_display_fault = None  # called (from the thread drawing) with the error of a tile drawn blank
        self.on_display_ready = None  # called (from a fetch thread) when a tile drawn blank has arrived
        self.fault_pause_s = 10.0  # after a fault, tiles not yet fetched are drawn blank at once for this long
        self._pending: dict = {}  # (level, row, col) -> the Future of a tile being fetched for the viewer
        self._faulty_until = 0.0

    def count_decoded(self, n: int = 1) -> None:
        """Record tiles decoded outside the cache (the zarr display path)."""
        with self._lock:
            self.tiles_decoded += n

    def add_derived_levels(self, max_side: int = 1024) -> None:
        """Append 2x-downsampled levels below the coarsest one until it fits ``max_side``."""
        while max(self.levels[-1].shape) > max_side and min(self.levels[-1].shape) >= 2:
            self.levels.append(DerivedLevel(self, len(self.levels) - 1))

    def can_scale(self, level: int, factor: int) -> bool:
        """Whether ``tile_scaled`` works for this level and factor, checked once on the level's
        busiest tile: the codec's scaled output must match the full decode box-averaged (mean
        difference under 4 grey levels), so a colour-space mix-up can never reach the pixels.
        """
        key = (level, factor)
        if key not in self._scalable:
            self._scalable[key] = self._check_scaled(self.levels[level], factor)
        return self._scalable[key]

    @staticmethod
    def _check_scaled(lvl: TileLevel, factor: int) -> bool:
        row, col = lvl.busiest_tile()
        try:
            small = lvl.decode_tile_scaled(row, col, factor)
        except Exception:
            return False
        if small is None:
            return False
        from PIL import Image

        full = np.ascontiguousarray(lvl.decode_tile(row, col)[: small.shape[0] * factor, : small.shape[1] * factor, :3])
        boxed = np.asarray(Image.fromarray(full).reduce(factor))
        return bool(np.abs(boxed.astype(np.int16) - small).mean() < 4.0)

    def tile_scaled(self, level: int, row: int, col: int, factor: int) -> np.ndarray:
        """One stored tile decoded at 1/``factor`` (see ``can_scale``), cropped to the level's bounds."""
        y0, x0, y1, x1 = self.levels[level].tile_bounds(row, col)
        data = self.levels[level].decode_tile_scaled(row, col, factor)
        if data is None:
            raise ValueError(f"level {level} cannot be decoded at 1/{factor}; check can_scale first")
        data = np.ascontiguousarray(data[: -(-(y1 - y0) // factor), : -(-(x1 - x0) // factor), :3])
        data.flags.writeable = False
        with self._lock:
            self.tiles_decoded += 1
        return data

    def tile(self, level: int, row: int, col: int) -> np.ndarray:
        """One decoded tile, cropped to the level's bounds, (h, w, 3) uint8 (read-only)."""
        lvl = self.levels[level]
        if lvl.cached:
            with self._lock:
                cache = self._cache.get(level, {})
                hit = cache.get((row, col))
                if hit is not None:
                    cache.move_to_end((row, col))
                    return hit
        y0, x0, y1, x1 = lvl.tile_bounds(row, col)
        data = lvl.decode_tile(row, col)
        if data.shape[0] < y1 - y0 or data.shape[1] < x1 - x0:
            raise RuntimeError(
                f"tile ({row}, {col}) of level {level} decoded to {data.shape}, expected at least {(y1 - y0, x1 - x0)}"
            )
        data = np.ascontiguousarray(data[: y1 - y0, : x1 - x0, :3])
        data.flags.writeable = False
        with self._lock:
            if not isinstance(lvl, DerivedLevel):
                self.tiles_decoded += 1
            cache = self._cache.setdefault(level, OrderedDict()) if lvl.cached else None
            if cache is not None and (row, col) not in cache:
                cache[(row, col)] = data
                self._cached_bytes += data.nbytes
                while self._cached_bytes > self.cache_bytes:
                    finest = min((k for k, c in self._cache.items() if c), default=None)
                    if finest is None or (finest == level and len(cache) == 1):
                        break
                    _, old = self._cache[finest].popitem(last=False)
                    self._cached_bytes -= old.nbytes
        return data

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Region of ``level`` with top-left (x, y) in that level's pixels: (h, w, 3) uint8, white outside."""
        out = np.full((h, w, 3), WHITE, dtype=np.uint8)
        lvl = self.levels[level]
        H, W = lvl.shape
        cy0, cx0, cy1, cx1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
        if cy0 >= cy1 or cx0 >= cx1:
            return out
        th, tw = lvl.tile_shape
        keys = [(r, c) for r in range(cy0 // th, (cy1 - 1) // th + 1) for c in range(cx0 // tw, (cx1 - 1) // tw + 1)]
        if len(keys) > 1 and self._workers > 1 and not getattr(_in_pool, "active", False):
            tiles = list(self._executor().map(lambda rc: self._tile_in_pool(level, *rc), keys))
        else:
            tiles = [self.tile(level, r, c) for r, c in keys]
        paste_tiles(out, x, y, dict(zip(keys, tiles)), th, tw)
        return out

    def as_dask(self, level: int):
        """The level as a lazy dask array (H, W, 3) with one chunk per stored tile."""
        import dask.array as da

        lvl = self.levels[level]
        th, tw = lvl.tile_shape
        rows, cols = lvl.grid
        H, W = lvl.shape
        name = f"pathalign-tiles-{next(_names)}-level{level}"
        dsk = {(name, r, c, 0): (self.display_tile, level, r, c) for r in range(rows) for c in range(cols)}
        chunks = (
            tuple(min(th, H - r * th) for r in range(rows)),
            tuple(min(tw, W - c * tw) for c in range(cols)),
            (3,),
        )
        return da.Array(dsk, name, chunks, dtype=np.uint8)

    def display_tile(self, level: int, row: int, col: int) -> np.ndarray:
        """A tile for the viewer (the chunks of ``as_dask``). With ``display_wait_s`` set (a slide on a server),
        the viewer never waits longer than that: a tile that has not come by then, or fails, is drawn white,
        its fetch goes on in the background (the tile is cached for the next draw), and ``on_display_fault`` is
        told. For ``fault_pause_s`` after a fault, tiles not already fetched are drawn white at once, so a hung
        server stalls the viewer once, not at every tile of a pan."""
        if self.display_wait_s is None:
            return self.tile(level, row, col)
        key = (level, row, col)
        with self._lock:
            hit = self._cache.get(level, {}).get((row, col))  # fetched before: never queued behind a hung fetch
            if hit is not None:
                return hit
            future = self._pending.get(key)
            if future is None:
                future = self._executor().submit(self._tile_in_pool, level, row, col)
                self._pending[key] = future
                future.add_done_callback(lambda _f, key=key: self._pending.pop(key, None))
        wait = self.display_wait_s if time.monotonic() >= self._faulty_until else 0.0
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            fault = TimeoutError(
                f"a tile of level {level} did not arrive within {self.display_wait_s:g} s; the viewer draws it blank "
                "and shows it once it arrives"
            )
        except Exception as exc:  # noqa: BLE001 (any failure of one tile: drawn blank, said, the viewer goes on)
            fault = exc
        self._tile_fault(fault, wait > 0 or future.done())
        if not future.done() and self.on_display_ready is not None:
            ready = self.on_display_ready
            future.add_done_callback(lambda f: ready() if f.exception() is None else None)
        y0, x0, y1, x1 = self.levels[level].tile_bounds(row, col)
        blank = np.full((y1 - y0, x1 - x0, 3), WHITE, np.uint8)
        blank.flags.writeable = False
        return blank

    def _tile_fault(self, fault: BaseException, new: bool) -> None:
        """Start (or extend) the pause after a fault; tell ``on_display_fault`` of a fault seen, not of a skip."""
        self._faulty_until = time.monotonic() + self.fault_pause_s
        if new and self.on_display_fault is not None:
            self.on_display_fault(fault)

    def _tile_in_pool(self, level: int, row: int, col: int) -> np.ndarray:
        _in_pool.active = True  # a worker never waits on its own pool (no deadlock)
        return self.tile(level, row, col)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="pathalign-decode")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self._cache.clear()
        self._cached_bytes = 0
