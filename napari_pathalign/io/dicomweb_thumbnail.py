"""A small picture of a slide series on a DICOMweb server, for a search result list: never its label.

The picture comes from the series' THUMBNAIL instance or its coarsest VOLUME level, rendered by the
server (WADO-RS ``.../frames/<n>/rendered``), so no pixels are decoded here beyond a few small images.
LABEL and OVERVIEW (macro) instances are never fetched: they can show the patient's name and record number.

Orthanc's DICOMweb plugin (1.7) renders one frame per request, so an instance held in one frame (a
scanner's thumbnail, a small last level) is one request; a small tiled level is assembled from its frames.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from napari_pathalign.io.errors import DicomWebError

SLIDE_IMAGES = ("THUMBNAIL", "VOLUME")  # ImageType value 3 of the instances a thumbnail may come from
MAX_FRAMES = 64  # a tiled level with more frames is too large to fetch for a list icon
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage


class NoThumbnailError(DicomWebError):
    """The series has no THUMBNAIL or VOLUME image small enough to show as a thumbnail."""


@dataclass
class SeriesThumbnail:
    """A series' picture and where it came from."""

    rgb: np.ndarray  # (H, W, 3) uint8, the longer side at most ``max_size``
    instance_uid: str  # SOP Instance UID of the instance rendered
    image_type: str  # 'THUMBNAIL' or 'VOLUME': never LABEL or OVERVIEW
    size: tuple[int, int]  # (columns, rows) of that instance's total pixel matrix


@dataclass
class _Candidate:
    uid: str
    image_type: str
    columns: int  # total pixel matrix
    rows: int
    frame_columns: int
    frame_rows: int
    frames: int
    metadata: dict  # DICOM JSON of the instance

    @property
    def whole(self) -> bool:
        """Whether the first frame holds the whole image (one request renders it)."""
        return self.frame_columns >= self.columns and self.frame_rows >= self.rows

    @property
    def tiles(self) -> int:
        return -(-self.columns // self.frame_columns) * -(-self.rows // self.frame_rows)


def series_thumbnail(connection, study_uid: str, series_uid: str, max_size: int = 128) -> SeriesThumbnail:
    """The series' THUMBNAIL or coarsest VOLUME image, rendered by the server, its longer side at most ``max_size``.

    ``connection`` is a ``DicomWebConnection``. Raises ``NoThumbnailError`` when the series has no such
    image small enough to fetch (at most ``MAX_FRAMES`` frames), and the connection's ``DicomWebError``s.
    """
    if int(max_size) < 8:
        raise ValueError(f"max_size is the thumbnail's longer side in pixels, >= 8; got {max_size!r}")
    metadata = connection.call(
        f"read the metadata of series {series_uid}",
        connection.client.retrieve_series_metadata,
        study_uid,
        series_uid,
    )
    candidates = [c for c in (_candidate(d) for d in metadata) if c is not None]
    choice = _choose(candidates, int(max_size))
    if choice is None:
        raise NoThumbnailError(
            f"DICOMweb server {connection.root}: series {series_uid} has no slide image small enough for a "
            f"thumbnail (a THUMBNAIL instance, or a VOLUME level of at most {MAX_FRAMES} frames)"
        )
    if choice.whole:
        image = _rendered(connection, study_uid, series_uid, choice.uid, 1)
        image = image[: choice.rows, : choice.columns]
    else:
        image = _assembled(connection, study_uid, series_uid, choice)
    return SeriesThumbnail(_shrunk(image, int(max_size)), choice.uid, choice.image_type, (choice.columns, choice.rows))


def _candidate(d: dict) -> _Candidate | None:
    """An instance a thumbnail may come from (a slide's THUMBNAIL or VOLUME image), else None."""
    image_type = [str(v).upper() for v in d.get("00080008", {}).get("Value") or []]
    sop_class = _first(d, "00080016")
    if sop_class != WSI_SOP_CLASS and _first(d, "00080060") != "SM":
        return None
    # an instance that says it is a label or overview anywhere in its type is never a candidate
    if {"LABEL", "OVERVIEW"} & set(image_type) or len(image_type) < 3 or image_type[2] not in SLIDE_IMAGES:
        return None
    try:
        frame_rows, frame_columns = int(_first(d, "00280010")), int(_first(d, "00280011"))
        rows = int(_first(d, "00480007") or frame_rows)  # TotalPixelMatrixRows
        columns = int(_first(d, "00480006") or frame_columns)
        frames = int(_first(d, "00280008") or 1)
    except ValueError:  # a size the server did not send: not worth guessing for an icon
        return None
    if min(frame_rows, frame_columns, rows, columns, frames) < 1:
        return None
    return _Candidate(_first(d, "00080018"), image_type[2], columns, rows, frame_columns, frame_rows, frames, d)


def _choose(candidates: list[_Candidate], max_size: int) -> _Candidate | None:
    """The cheapest instance that still fills the thumbnail: one frame if any is large enough, else the
    largest one-frame image, else the smallest tiled level of at most ``MAX_FRAMES`` frames."""
    whole = sorted((c for c in candidates if c.whole), key=lambda c: c.columns * c.rows)
    big_enough = [c for c in whole if max(c.columns, c.rows) >= max_size]
    if big_enough:
        return big_enough[0]
    tiled = sorted((c for c in candidates if not c.whole and c.tiles <= MAX_FRAMES), key=lambda c: c.columns * c.rows)
    if tiled and (not whole or max(tiled[0].columns, tiled[0].rows) > max(whole[-1].columns, whole[-1].rows)):
        return tiled[0]
    return whole[-1] if whole else None


def _rendered(connection, study_uid: str, series_uid: str, instance_uid: str, frame: int) -> np.ndarray:
    """Frame ``frame`` (1-based) of an instance, rendered by the server: (rows, columns, 3) uint8."""
    from PIL import Image

    data = connection.call(
        f"fetch a rendered frame of instance {instance_uid}",
        connection.client.retrieve_instance_frames_rendered,
        study_uid,
        series_uid,
        instance_uid,
        [frame],
        media_types=("image/png",),  # lossless: small frames, and tiles that meet without JPEG seams
    )
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as exc:  # HTML, a truncated answer: the server sent no image
        raise DicomWebError(
            f"DICOMweb server {connection.root}: the rendered frame {frame} of instance {instance_uid} is not an "
            f"image ({type(exc).__name__}: {exc})"
        ) from exc


def _assembled(connection, study_uid: str, series_uid: str, c: _Candidate) -> np.ndarray:
    """A tiled instance's total pixel matrix from its rendered frames (first focal plane and optical path)."""
    positions = _frame_positions(c)
    image = np.full((c.rows, c.columns, 3), 255, np.uint8)  # (rows, columns, 3): white where no frame lies
    for frame, (row0, col0) in positions:
        tile = _rendered(connection, study_uid, series_uid, c.uid, frame)
        h, w = min(tile.shape[0], c.rows - row0), min(tile.shape[1], c.columns - col0)
        if h > 0 and w > 0:
            image[row0 : row0 + h, col0 : col0 + w] = tile[:h, :w]
    return image


def _frame_positions(c: _Candidate) -> list[tuple[int, tuple[int, int]]]:
    """[(frame number, (row, column) of its top-left pixel in the total pixel matrix)]."""
    organisation = _first(c.metadata, "00209311")  # DimensionOrganizationType
    per_frame = c.metadata.get("52009230", {}).get("Value") or []  # PerFrameFunctionalGroupsSequence
    if organisation != "TILED_FULL" and per_frame:  # TILED_SPARSE: each frame says where it lies
        out = []
        for k, item in enumerate(per_frame[: c.frames]):
            position = (item.get("0048021A", {}).get("Value") or [{}])[0]  # PlanePositionSlideSequence
            try:
                col, row = int(_first(position, "0048021E")), int(_first(position, "0048021F"))
            except ValueError:
                raise NoThumbnailError(f"instance {c.uid}: frame {k + 1} does not say where it lies") from None
            out.append((k + 1, (row - 1, col - 1)))  # the positions are 1-based
        return out
    across = -(-c.columns // c.frame_columns)
    # TILED_FULL: frames row by row over the matrix, first focal plane and optical path first
    return [(k + 1, ((k // across) * c.frame_rows, (k % across) * c.frame_columns)) for k in range(c.tiles)]


def _shrunk(image: np.ndarray, max_size: int) -> np.ndarray:
    from PIL import Image

    pic = Image.fromarray(np.ascontiguousarray(image))
    pic.thumbnail((max_size, max_size), Image.LANCZOS)  # keeps the aspect ratio; never enlarges
    return np.asarray(pic.convert("RGB"))


def _first(d: dict, tag: str) -> str:
    values = d.get(tag, {}).get("Value") or [""]
    return str(values[0])
