"""TIFF-family slides (Aperio SVS, OME-TIFF, Hamamatsu NDPI, generic tiled pyramids) via tifffile.

Two paths share tifffile's decoders: the display levels are tifffile's zarr store -> zarr -> dask
(one chunk per stored tile), and ``read_region`` decodes the stored tiles directly from their file
offsets with ``os.pread`` in a thread pool, which is several times faster than slicing the zarr
store for the many small random reads that patch extraction makes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from napari_pathalign.io.errors import NotBrightfieldError, SlideError
from napari_pathalign.io.mpp import mpp_from_aperio, mpp_from_ome, mpp_from_resolution
from napari_pathalign.io.slide import Slide, SlideInfo, require
from napari_pathalign.io.tiles import WHITE, TileLevel, TileReader
from napari_pathalign.io.zarr_view import zarr_level

ASSOCIATED_NAMES = {"label": "label", "macro": "macro", "thumbnail": "thumbnail", "overview": "macro"}


class TiffTileLevel(TileLevel):
    """One stored TIFF page (tiled, striped, or NDPI restart-marker chunks) decoded tile by tile."""

    def __init__(self, path: Path, fd: int, page, level: int):
        self._path, self._fd, self._page, self._level = path, fd, page, level
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.tile_shape = (int(page.chunks[0]), int(page.chunks[1]))
        self._cols = int(page.chunked[1])
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._samples = int(page.samplesperpixel)
        self._decode = page.decode  # tifffile builds (and caches) the decoder once per page
        self._kwargs = {"jpegtables": page.jpegtables, "jpegheader": page.jpegheader, "_fullsize": True}
        # plain baseline-JPEG tiles (not NDPI's restart-marker strips) can be decoded at 1/2, 1/4, 1/8
        self._jpeg = (
            page.compression == 7
            and page.is_tiled
            and page.jpegheader is None
            and page.bitspersample == 8
            and self._samples == 3
            and page.photometric in (2, 6)
        )
        self._rgb_jpeg = page.photometric == 2  # Aperio: RGB samples, no marker saying so in the stream

    def decode_tile(self, row: int, col: int) -> np.ndarray:
        th, tw = self.tile_shape

        def decode(data: bytes, index: int) -> np.ndarray:
            return to_rgb(np.asarray(self._decode(data, index, **self._kwargs)[0]).reshape(th, tw, self._samples))

        return self._decode_stored(row, col, 1, decode)

    def busiest_tile(self) -> tuple[int, int]:
        # the most compressed bytes: detail, i.e. tissue, not blank glass
        return divmod(int(np.argmax(self._counts)), self._cols)

    def decode_tile_scaled(self, row: int, col: int, factor: int) -> np.ndarray | None:
        if not self._jpeg or factor not in (2, 4, 8) or self.tile_shape[0] % factor or self.tile_shape[1] % factor:
            return None
        th, tw = self.tile_shape[0] // factor, self.tile_shape[1] // factor
        return self._decode_stored(
            row,
            col,
            factor,
            lambda data, _: decode_jpeg_scaled(data, self._page.jpegtables, self._rgb_jpeg, th, tw, factor),
        )

    def _decode_stored(self, row: int, col: int, factor: int, decode) -> np.ndarray:
        """Read tile (row, col) from the file and ``decode(bytes, index)`` it at 1/``factor``;
        white for a sparse (never scanned) tile; a damaged one raises a SlideError saying where."""
        index = row * self._cols + col
        count = self._counts[index]
        if count == 0:  # sparse tile: never scanned, background
            return np.full((self.tile_shape[0] // factor, self.tile_shape[1] // factor, 3), WHITE, np.uint8)
        data = os.pread(self._fd, count, self._offsets[index])
        try:
            if len(data) != count:
                raise ValueError(f"file ends {count - len(data)} bytes early")
            return decode(data, index)
        except Exception as exc:
            y, x = row * self.tile_shape[0], col * self.tile_shape[1]
            raise SlideError(
                f"{self._path}: the stored tile at row {row}, column {col} of level {self._level} "
                f"(level pixels x={x}, y={y}) could not be decoded ({exc}); the file is damaged there"
            ) from exc


ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"  # APP14, transform 0: the samples are RGB


def decode_jpeg_scaled(
    data: bytes, tables: bytes | None, rgb: bool, height: int, width: int, factor: int
) -> np.ndarray:
    """A TIFF JPEG tile decoded straight to 1/``factor`` of its size by libjpeg-turbo's scaled IDCT.

    The scaled IDCT is the low-pass of the tile's own DCT (libvips's shrink-on-load does the same):
    about half the work of a full decode and no resize pass afterwards. Shared JPEGTables are
    spliced in front of the tile, and RGB-coded tiles (Aperio) get the Adobe marker that tells
    libjpeg not to convert from YCbCr.
    """
    import simplejpeg

    if tables:
        data = tables[:-2] + data[2:]  # tables' SOI .. DQT/DHT (no EOI), then the tile after its SOI
    if rgb:
        data = data[:2] + ADOBE_RGB + data[2:]
    tile = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=height, min_width=width, min_factor=factor)
    if tile.shape[:2] != (height, width):
        raise ValueError(f"scaled decode gave {tile.shape[:2]}, expected {(height, width)}")
    return tile


def to_rgb(tile: np.ndarray) -> np.ndarray:
    """Gray -> RGB by repetition; RGBA -> RGB by dropping alpha (slides are opaque)."""
    if tile.shape[-1] == 1:
        return np.repeat(tile, 3, axis=-1)
    return tile[..., :3]


def open_tiff(path: Path) -> Slide:
    import tifffile

    with _TifffileLog() as log:
        try:
            tif = tifffile.TiffFile(path)
            tif.series  # noqa: B018 - parses every image directory now, while we listen to the log
        except Exception as exc:  # tifffile raises many types for garbage; all mean "not a readable TIFF"
            raise SlideError(f"{path}: not a readable TIFF ({exc}); the file may be truncated or not a slide") from exc
    try:
        # tifffile only logs a broken directory chain and goes on with the pages before it
        broken = [m for m in log.messages if "invalid" in m and "offset" in m]
        require(
            not broken,
            path,
            f"the file is truncated or damaged ({broken[:1]}; {os.path.getsize(path)} bytes); copy it again",
        )
        return _open(path, tif)
    except BaseException:
        tif.close()
        raise


class _TifffileLog(logging.Handler):
    """Collects what tifffile logs while a file is parsed."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self):
        logger = logging.getLogger("tifffile")
        self._propagate, logger.propagate = logger.propagate, False  # ours to report, as a SlideError
        logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        logger = logging.getLogger("tifffile")
        logger.removeHandler(self)
        logger.propagate = self._propagate


def _main_series(path: Path, tif):
    """The largest RGB/gray image series: the slide itself, not its label or macro."""
    candidates = [s for s in tif.series if s.levels and _is_image(s.levels[0])]
    if not candidates:
        raise NotBrightfieldError(f"{path}: contains no 2-D RGB or grayscale image; expected a brightfield slide")
    main = max(candidates, key=lambda s: s.levels[0].shape[0] * s.levels[0].shape[1])
    return main


def _is_image(level) -> bool:
    shape = level.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))


def _check_page(path: Path, page, level: int) -> None:
    import tifffile

    if page.dtype != np.uint8:
        raise NotBrightfieldError(
            f"{path}: level {level} has {page.dtype} pixels; only 8-bit brightfield (RGB) slides are supported"
        )
    require(
        page.planarconfig == 1 or page.samplesperpixel == 1,
        path,
        f"level {level} stores colour planes separately (PlanarConfiguration=2), which is not supported",
    )
    if page.samplesperpixel not in (1, 3, 4):
        raise NotBrightfieldError(
            (
                f"{path}: level {level} has {page.samplesperpixel} samples per pixel; expected RGB (3), RGBA "
                "(4) or gray (1)"
            )
        )
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]
    except (KeyError, ValueError) as exc:
        raise SlideError(
            (
                f"{path}: level {level} uses compression {page.compression!r}, which no installed codec decodes; "
                "supported are JPEG, JPEG 2000, JPEG XL, WebP, LZW, Deflate, Zstd, PackBits and none"
            )
        ) from exc
    size = os.path.getsize(path)
    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts) if c]
    require(
        not ends or max(ends) <= size,
        path,
        f"file is truncated: level {level} needs {max(ends or [0])} bytes but the file has {size}; copy it again",
    )


def _format_and_mpp(tif, page0) -> tuple[str, float | None, str]:
    if tif.is_svs:
        return ("aperio-svs", *mpp_from_aperio(page0.description))
    if tif.is_ome:
        return ("ome-tiff", *mpp_from_ome(tif.ome_metadata or ""))
    if tif.is_ndpi:
        return ("ndpi", *mpp_from_resolution(page0))
    if getattr(tif, "is_philips", False):
        return ("philips-tiff", *mpp_from_resolution(page0))
    return ("generic-tiff", *mpp_from_resolution(page0))


def _open(path: Path, tif) -> Slide:
    size = os.path.getsize(path)
    require(
        len(tif.pages) > 0,
        path,
        f"no image directory could be read within its {size} bytes: the file is truncated or damaged; copy it again",
    )
    series = _main_series(path, tif)
    pages = [lvl.keyframe for lvl in series.levels if _is_image(lvl)]
    for k, page in enumerate(pages):
        _check_page(path, page, k)
    fmt, mpp, mpp_source = _format_and_mpp(tif, pages[0])
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    reader = TileReader([TiffTileLevel(path, fd, page, k) for k, page in enumerate(pages)])
    display = [zarr_level(path, series, k, reader) for k in range(len(pages))]

    associated = {}
    for s in tif.series:
        name = ASSOCIATED_NAMES.get((s.name or "").strip().lower())
        if s is not series and name and s.levels and _is_image(s.levels[0]):
            associated[name] = zarr_level(path, s, 0, None)

    props = {"tiff.ImageDescription": pages[0].description, "tiff.Software": pages[0].software}
    slide = Slide(SlideInfo(path, fmt, mpp, mpp_source, props), reader, display, associated)
    slide.on_close(lambda: os.close(fd))
    slide.on_close(tif.close)
    return slide
