"""``Slide``: a lazy multi-resolution view of one whole-slide image, in level-0 pixels and µm."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from napari_pathalign.io.errors import SlideError
from napari_pathalign.io.tiles import TileReader


@dataclass
class SlideInfo:
    """What a backend found in the file; everything ``Slide`` needs besides the pixels."""

    path: PurePath  # the file or DICOM folder that was opened; server/root/studies/<uid>/series/<uid> for a URL
    format: str  # "aperio-svs", "ome-tiff", "generic-tiff", "ndpi", "dicom", ...
    mpp: float | None  # µm per level-0 pixel, None when the file does not say
    mpp_source: str  # where mpp came from, or why there is none (shown to the user)
    properties: dict[str, Any] = field(default_factory=dict)  # vendor metadata, flat
    url: str | None = None  # dicomweb+http(s):// address of a slide on a server (its path is then host/.../series)


class Slide:
    """A whole-slide image opened lazily: nothing is decoded until pixels are asked for.

    Attributes
    ----------
    levels : list of dask arrays (Y, X, 3) uint8, level 0 first; one chunk per stored tile.
        Levels below the file's coarsest one are built on demand by 2x2 averaging, so a
        TIFF without a pyramid still pans smoothly; ``n_stored_levels`` says how many are stored.
    shape_level0 : (height, width) of level 0 in pixels.
    downsamples : level-0 pixels per level pixel, per level (OpenSlide's definition).
    mpp : µm per level-0 pixel, or None when the file does not say (never guessed).
    tile_size : (height, width) of a stored tile at level 0.
    format : the backend's name for the file type.
    associated : lazy label / macro / thumbnail images found in the file, by name. Label and
        macro images can carry patient identifiers: callers must not show them unasked.
    """

    def __init__(self, info: SlideInfo, reader: TileReader, display_levels: list, associated: dict):
        self._info = info
        self._reader = reader
        self.n_stored_levels = len(display_levels)
        reader.add_derived_levels()
        self.levels = list(display_levels) + [reader.as_dask(k) for k in range(len(display_levels), len(reader.levels))]
        self.associated = dict(associated)
        h0, w0 = reader.levels[0].shape
        self.downsamples = [(h0 / lvl.shape[0] + w0 / lvl.shape[1]) / 2 for lvl in reader.levels]
        self._closers: list = []

    @property
    def remote(self) -> bool:
        """Whether the viewer's tiles come from a server with a bounded wait (``TileReader.display_tile``)."""
        return self._reader.display_wait_s is not None

    def watch_display(self, on_fault=None, on_ready=None) -> None:
        """For the viewer of a slide on a server: ``on_fault(exc)`` when a tile is drawn blank because it failed
        or did not come in time, ``on_ready()`` (from a fetch thread) when such a tile has arrived."""
        self._reader.on_display_fault, self._reader.on_display_ready = on_fault, on_ready

    # -- metadata ---------------------------------------------------------------------------
    path = property(lambda self: self._info.path)
    format = property(lambda self: self._info.format)
    mpp = property(lambda self: self._info.mpp)
    mpp_source = property(lambda self: self._info.mpp_source)
    properties = property(lambda self: dict(self._info.properties))
    url = property(lambda self: self._info.url)

    @property
    def shape_level0(self) -> tuple[int, int]:
        return self._reader.levels[0].shape

    @property
    def tile_size(self) -> tuple[int, int]:
        return self._reader.levels[0].tile_shape

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [lvl.shape for lvl in self._reader.levels]

    @property
    def tiles_decoded(self) -> int:
        """Stored tiles decoded so far by ``read_region`` / ``thumbnail`` (cache misses)."""
        return self._reader.tiles_decoded

    def __repr__(self) -> str:
        h, w = self.shape_level0
        mpp = f"{self.mpp:.4g} µm/px" if self.mpp else "no mpp (pixel units)"
        return f"Slide({self.path.name!r}, {self.format}, {w}x{h} px, {len(self.levels)} levels, {mpp})"

    # -- pixels -----------------------------------------------------------------------------
    def read_region(self, xy_level0: tuple[int, int], size: tuple[int, int], level: int = 0) -> np.ndarray:
        """A region as OpenSlide reads it: top-left in level-0 pixels, size (width, height) at ``level``.

        Returns (height, width, 3) uint8, white beyond the slide's edge. At levels > 0 the corner
        maps to the nearest level pixel: stored pixels are returned, never resampled.
        """
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level {level!r} does not exist; this slide has levels 0..{len(self.levels) - 1}")
        w, h = (int(v) for v in size)
        if w < 0 or h < 0:
            raise ValueError(f"size must be (width, height) >= 0, got {size!r}")
        ds = self.downsamples[level]
        x, y = (int(round(v / ds)) for v in xy_level0)
        return self._reader.read(level, x, y, w, h)

    def tile_shape(self, level: int = 0) -> tuple[int, int]:
        """(height, width) of the stored tiles of ``level``: the unit in which pixels are decoded."""
        return self._reader.levels[level].tile_shape

    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        """One stored tile of ``level``, cropped to the level's bounds: (h, w, 3) uint8, read-only."""
        return self._reader.tile(level, row, col)

    def can_read_scaled(self, level: int, factor: int) -> bool:
        """Whether ``read_tile_scaled`` works for ``level`` (JPEG tiles, checked against a full decode)."""
        return self._reader.can_scale(level, factor)

    def read_tile_scaled(self, level: int, row: int, col: int, factor: int) -> np.ndarray:
        """One stored tile decoded straight to 1/``factor`` (2, 4 or 8) of its size by the codec
        (JPEG's scaled IDCT), cropped to the level's bounds (size rounded up); see ``can_read_scaled``."""
        return self._reader.tile_scaled(level, row, col, factor)

    def thumbnail(self, max_size: int = 1024) -> np.ndarray:
        """The whole slide, downscaled (area average) so its longer side is at most ``max_size``."""
        from PIL import Image

        if max_size < 1:
            raise ValueError(f"max_size must be a positive number of pixels, got {max_size!r}")
        h0, w0 = self.shape_level0
        scale = min(1.0, max_size / max(h0, w0))
        out_w, out_h = max(1, round(w0 * scale)), max(1, round(h0 * scale))
        # the coarsest level that is still at least as large as the thumbnail
        level = max(k for k, (lh, lw) in enumerate(self.level_shapes) if k == 0 or (lh >= out_h and lw >= out_w))
        lh, lw = self.level_shapes[level]
        region = self._reader.read(level, 0, 0, lw, lh)
        if (lw, lh) == (out_w, out_h):
            return region
        return np.asarray(Image.fromarray(region).resize((out_w, out_h), Image.Resampling.BOX))

    # -- lifetime ---------------------------------------------------------------------------
    def on_close(self, fn) -> None:
        self._closers.append(fn)

    def close(self) -> None:
        self._reader.close()
        for fn in self._closers:
            fn()
        self._closers.clear()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def require(condition: bool, path: Path, message: str) -> None:
    """Raise ``SlideError`` naming the file when ``condition`` is false."""
    if not condition:
        raise SlideError(f"{path}: {message}")
