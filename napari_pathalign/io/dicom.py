"""DICOM whole-slide images (VL Whole Slide Microscopy, a folder of instances or one file).

wsidicom is used rather than pydicom directly because it assembles the pyramid, the label and
overview from separate instances, and handles TILED_FULL and TILED_SPARSE frame organisations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathalign.io.errors import SlideError
from napari_pathalign.io.slide import Slide, SlideInfo
from napari_pathalign.io.tiles import TileLevel, TileReader


class DicomTileLevel(TileLevel):
    """One pyramid level of a DICOM WSI; a tile is one frame."""

    def __init__(self, path: Path, wsi, level):
        self._path, self._wsi, self._level = path, wsi, level.level
        self.shape = (int(level.size.height), int(level.size.width))
        self.tile_shape = (int(level.tile_size.height), int(level.tile_size.width))

    def decode_tile(self, row: int, col: int) -> np.ndarray:
        try:
            return np.asarray(self._wsi.read_tile(self._level, (col, row)).convert("RGB"))
        except Exception as exc:
            raise SlideError(
                f"{self._path}: the frame at row {row}, column {col} of pyramid level {self._level} "
                f"could not be decoded ({exc}); the file is damaged there"
            ) from exc


def open_dicom(path: Path) -> Slide:
    import wsidicom

    try:
        wsi = wsidicom.WsiDicom.open(_series_files(path) if path.is_file() else path)
    except Exception as exc:  # wsidicom raises its own and pydicom's errors for non-WSI input
        what = "folder" if path.is_dir() else "file"
        raise SlideError(
            f"{path}: no DICOM whole-slide image found in this {what} ({exc}); expected VL Whole "
            "Slide Microscopy instances (.dcm), a folder of them or one of them"
        ) from exc
    try:
        levels = [DicomTileLevel(path, wsi, lvl) for lvl in wsi.levels]
        reader = TileReader(levels)
        mpp, source = pixel_spacing_mpp(wsi)
        props = {"dicom.levels": [lvl.level for lvl in wsi.levels]}
        slide = Slide(
            SlideInfo(path, "dicom", mpp, source, props),
            reader,
            [reader.as_dask(k) for k in range(len(levels))],
            associated_images(wsi),
        )
    except SlideError:
        wsi.close()
        raise
    except Exception as exc:
        wsi.close()
        raise SlideError(f"{path}: DICOM slide could not be opened ({exc})") from exc
    slide.on_close(wsi.close)
    return slide


def _series_files(path: Path) -> list[Path]:
    """The given instance and its siblings of the same series, as OpenSlide does for one file.

    A user who drops one .dcm (perhaps the thumbnail instance) means the whole slide it belongs to.
    """
    import pydicom

    def series_uid(p: Path) -> str | None:
        try:
            return str(
                pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID
            )
        except Exception:  # not DICOM, or no series: not a sibling
            return None

    uid = series_uid(path)
    if uid is None:
        return [path]
    siblings = [p for p in sorted(path.parent.glob("*.dcm")) if p != path and series_uid(p) == uid]
    return [path, *siblings]


def pixel_spacing_mpp(wsi) -> tuple[float | None, str]:
    """µm per level-0 pixel from Pixel Spacing, and where it came from (or why there is none)."""
    try:
        spacing = wsi.levels[0].pixel_spacing  # mm per pixel, from the Pixel Spacing attribute
    except Exception:
        return None, "DICOM has no Pixel Spacing"
    if spacing is None:
        return None, "DICOM has no Pixel Spacing"
    return float(spacing.width) * 1000.0, "DICOM Pixel Spacing"


def associated_images(wsi) -> dict:
    """The label and overview (macro) images as lazy arrays: read only when shown."""
    import dask
    import dask.array as da

    out = {}
    for name, group, read in (("label", wsi.labels, wsi.read_label), ("macro", wsi.overviews, wsi.read_overview)):
        if group:
            size = group[0].size
            lazy = dask.delayed(lambda read=read: np.asarray(read().convert("RGB")))()
            out[name] = da.from_delayed(lazy, shape=(size.height, size.width, 3), dtype=np.uint8)
    return out
