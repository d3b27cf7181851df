"""A DICOM whole-slide image on a DICOMweb server (a PACS or VNA), opened as the same lazy µm pyramid as a file.

wsidicom's DICOMweb source assembles the pyramid from the series' instances exactly as it does from
files, so a slide read from the archive and from disk give the same pixels. Frames are fetched only
when a region or a display chunk needs them, in parallel, and kept in the reader's LRU (bounded by
``DicomWebOptions.cache_bytes``): a frame costs a round trip, so unlike a local file it is worth keeping.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import numpy as np

from napari_pathalign.io.dicom import DicomTileLevel, associated_images, pixel_spacing_mpp
from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection, DicomWebOptions
from napari_pathalign.io.errors import NotASlideError, SeriesNotFoundError, SlideError
from napari_pathalign.io.slide import Slide, SlideInfo
from napari_pathalign.io.tiles import TileReader

SLIDE_MODALITY = "SM"  # slide microscopy: the modality of VL Whole Slide Microscopy Image series


class DicomWebTileLevel(DicomTileLevel):
    """One pyramid level of a slide on a server; a tile is one frame, fetched with WADO-RS."""

    cached = True  # a frame costs a round trip to the archive: keep it (the reader's bounded LRU)

    def __init__(self, connection: DicomWebConnection, where: str, wsi, level):
        super().__init__(where, wsi, level)
        self._connection = connection

    def decode_tile(self, row: int, col: int) -> np.ndarray:
        return self._connection.call(
            f"fetch the frame at row {row}, column {col} of pyramid level {self._level}",
            lambda: np.asarray(self._wsi.read_tile(self._level, (col, row)).convert("RGB")),
        )


def open_dicomweb(url: str, credentials: Credentials | None = None, options: DicomWebOptions | None = None) -> Slide:
    """Open ``dicomweb+http(s)://.../studies/<StudyUID>/series/<SeriesUID>`` lazily.

    ``credentials`` default to the environment (``Credentials.from_env``). Raises ``SeriesNotFoundError``,
    ``NotASlideError``, ``DicomWebAuthError`` or ``DicomWebConnectionError`` (all ``SlideError``).
    """
    try:
        address = DicomWebAddress.parse(url)
    except ValueError as exc:
        raise SlideError(str(exc)) from exc
    if address.study_uid is None or address.series_uid is None:
        missing = "/series/<SeriesInstanceUID>" if address.study_uid else "/studies/<StudyUID>/series/<SeriesUID>"
        raise SlideError(f"{address.url}: a slide is one series of a study; append {missing}")
    options = options or DicomWebOptions()
    credentials = Credentials.from_env() if credentials is None else credentials
    connection = DicomWebConnection(address.root, credentials, options)
    try:
        wsi = _open_series(connection, address)
    except BaseException:
        connection.close()
        raise
    where = str(_display_path(address))
    try:
        levels = [DicomWebTileLevel(connection, where, wsi, lvl) for lvl in wsi.levels]
        reader = TileReader(levels, cache_bytes=options.cache_bytes, workers=options.workers)
        mpp, source = pixel_spacing_mpp(wsi)
        props = {
            "dicom.levels": [lvl.level for lvl in wsi.levels],
            "dicomweb.root": address.root,
            "dicom.StudyInstanceUID": address.study_uid,
            "dicom.SeriesInstanceUID": address.series_uid,
        }
        info = SlideInfo(_display_path(address), "dicomweb", mpp, source, props, url=address.url)
        slide = Slide(info, reader, [reader.as_dask(k) for k in range(len(levels))], associated_images(wsi))
    except BaseException:
        wsi.close()
        connection.close()
        raise
    slide.on_close(wsi.close)
    slide.on_close(connection.close)
    return slide


def _open_series(connection: DicomWebConnection, address: DicomWebAddress):
    """wsidicom's WsiDicom of the series, after checking that it exists and is a slide (clear errors first)."""
    import wsidicom
    from wsidicom.config import get_settings

    study, series = address.study_uid, address.series_uid
    found = connection.search_series(study, series_uid=series)
    if not found:
        others = connection.search_series(study)
        if others:
            listed = ", ".join(f"{h.series_uid} ({h.modality})" for h in others[:5])
            raise SeriesNotFoundError(
                f"{address.url}: study {study} has no series {series} on {address.root}; its series: {listed}"
            )
        raise SeriesNotFoundError(
            f"{address.url}: the server {address.root} has no study {study} (or no series {series} in it); "
            "check the UIDs, e.g. by searching the archive for the patient or accession number"
        )
    modality = found[0].modality
    if modality and modality != SLIDE_MODALITY:
        raise NotASlideError(
            f"{address.url}: series {series} is modality {modality}, not a whole-slide image; expected modality "
            f"{SLIDE_MODALITY} (VL Whole Slide Microscopy Image instances)"
        )
    # wsidicom's own frame caches would hold every frame a second time next to the reader's LRU
    settings = replace(get_settings(), decoded_frame_cache_size=0, encoded_frame_cache_size=0)
    web = _AsStoredWebClient(connection)
    try:
        with warnings.catch_warnings():  # the ICC profile is bulk data, fetched only on request: not a problem
            warnings.filterwarnings("ignore", message="No bulk data URI handler", category=UserWarning)
            return wsidicom.WsiDicom.open_web(web, study, series, settings=settings)
    except Exception as exc:
        err = connection.error(exc, f"open series {series}")
        if type(err).__name__ == "DicomWebError" and "WsiDicom" in type(exc).__name__:  # found nothing to open
            raise NotASlideError(
                f"{address.url}: series {series} holds no VL Whole Slide Microscopy Image pyramid "
                f"({type(exc).__name__}: {exc}); expected a DICOM WSI series"
            ) from exc
        raise err from exc


class _AsStoredWebClient:
    """wsidicom's DICOMweb client, told each instance's stored transfer syntax so that frames come as stored.

    wsidicom otherwise asks for JPEG first, and a server that transcodes (Orthanc does) would then hand out
    re-compressed pixels, or an uncompressed RGB slide as JPEG in YCbCr that is labelled RGB: not the
    slide's pixels. DICOMweb's ``transfer-syntax=*`` asks for a frame as stored and the answer names it.
    """

    def __new__(cls, connection: DicomWebConnection):
        import wsidicom

        class Client(wsidicom.WsiDicomWebClient):
            def get_wsi_instances(self, study_uid, series_uids):
                for series_uid, instance_uid, available in super().get_wsi_instances(study_uid, series_uids):
                    stored = available or _stored_syntax(connection, study_uid, series_uid, instance_uid)
                    yield series_uid, instance_uid, stored

            def get_frames(self, *args, **kwargs):
                # dicomweb-client hands out bytearrays, which pydicom takes for a list of values in an
                # uncompressed frame's PixelData ("a bytes-like object is required, not 'list'")
                return (bytes(frame) for frame in super().get_frames(*args, **kwargs))

        return Client(connection.client)


def _stored_syntax(connection: DicomWebConnection, study: str, series: str, instance: str) -> set | None:
    """{the transfer syntax UID an instance is stored in}, from its first frame's answer; None if not said."""
    from pydicom.uid import UID

    url = f"{connection.root}/studies/{study}/series/{series}/instances/{instance}/frames/1"
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    timeout = (connection.options.connect_timeout_s, connection.options.read_timeout_s)
    try:
        with connection.session.get(url, headers={"Accept": accept}, stream=True, timeout=timeout) as answer:
            content_type = answer.headers.get("Content-Type", "") if answer.ok else ""
    except Exception:  # the server cannot say: wsidicom probes the syntaxes it knows instead
        return None
    found = re.search(r"transfer-syntax=([0-9.]+)", content_type)
    return {UID(found.group(1))} if found else None


def _display_path(address: DicomWebAddress) -> PurePosixPath:
    """host[:port]/root/studies/<uid>/series/<uid>: a path-like name whose ``.name`` is the series UID."""
    parts = urlsplit(address.root)
    return PurePosixPath(parts.netloc + parts.path) / "studies" / address.study_uid / "series" / address.series_uid
