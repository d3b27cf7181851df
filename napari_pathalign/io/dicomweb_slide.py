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
from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection, DicomWebOptions, brief
from napari_pathalign.io.errors import NotASlideError, SeriesNotFoundError, SlideError
from napari_pathalign.io.slide import Slide, SlideInfo
from napari_pathalign.io.tiles import TileReader

SLIDE_MODALITY = "SM"  # slide microscopy: the modality of VL Whole Slide Microscopy Image series


class FrameDecodeError(SlideError):
    """A frame came from the server but its bytes are not an image (damaged pixel data in the archive)."""


class SeriesPath(PurePosixPath):
    """``host[:port]/root/studies/<uid>/series/<uid>``: the path-like name of a slide on a server, carrying its
    address and the identity of its pixels (``pyramid_identity``), since there is no file to hash or reopen.
    Code that keeps only ``slide.path`` (report provenance, the report store, "Add current slide") so finds
    the same identity as ``slide_fingerprint`` and the address to open the slide again."""

    dicom_pyramid: tuple[str, ...] = ()
    dicomweb_url: str = ""  # dicomweb+http(s)://.../studies/<uid>/series/<uid>: never holds credentials

    @property
    def stem(self) -> str:  # the series UID whole: its dots are not a file suffix
        return self.name

    @property
    def suffix(self) -> str:
        return ""

    def __reduce__(self):
        return _series_path, (str(self), self.dicom_pyramid, self.dicomweb_url)


def _series_path(text: str, pyramid: tuple[str, ...], url: str) -> SeriesPath:
    path = SeriesPath(text)
    path.dicom_pyramid, path.dicomweb_url = tuple(pyramid), url
    return path


def pyramid_identity(wsi) -> tuple[str, ...]:
    """``'<SOPInstanceUID> <columns>x<rows> <TransferSyntaxUID>'`` of each instance of the pyramid, sorted.

    What the slide's pixels are, wherever the series is served from: DICOM never changes an instance's
    pixels under its SOP Instance UID, and the matrix size and transfer syntax (frames are fetched as
    stored) guard against an archive that re-encoded or cropped it under the same UID. Metadata only.
    """
    found = set()
    for level in wsi.levels:
        for instance in level.instances.values():
            syntax = instance.image_data.transfer_syntax
            for dataset in instance.datasets:
                size = dataset.image_size
                found.add(f"{dataset.uids.instance} {size.width}x{size.height} {syntax}")
    return tuple(sorted(found))


class DicomWebTileLevel(DicomTileLevel):
    """One pyramid level of a slide on a server; a tile is one frame, fetched with WADO-RS."""

    cached = True  # a frame costs a round trip to the archive: keep it (the reader's bounded LRU)

    def __init__(self, connection: DicomWebConnection, where: str, wsi, level):
        super().__init__(where, wsi, level)
        self._connection = connection
        self._instance = level.default_instance

    def decode_tile(self, row: int, col: int) -> np.ndarray:
        doing = f"fetch the frame at row {row}, column {col} of pyramid level {self._level}"
        try:
            return np.asarray(self._wsi.read_tile(self._level, (col, row)).convert("RGB"))
        except Exception as exc:
            if _from_the_network(exc):
                raise self._connection.error(exc, doing) from exc
            # the answer came, but its bytes are no image: a fault of that frame only, not of the connection
            uid = self._instance.identifier
            raise FrameDecodeError(
                f"{self._path}: the frame at row {row}, column {col} of pyramid level {self._level} "
                f"({self._frame_number(row, col)}instance {uid}) arrived but could not be decoded "
                f"({type(exc).__name__}: {brief(exc)}): the archive holds damaged pixel data there. "
                f"Other regions still read; ask the archive's administrators to check instance {uid}"
            ) from exc

    def _frame_number(self, row: int, col: int) -> str:
        """'frame N of ' (1-based, as WADO-RS numbers them) where frames are stored row by row (TILED_FULL, one
        focal plane and optical path: the common case), else ''."""
        inst = self._instance
        try:
            if inst.dataset.tile_type.name != "FULL" or len(inst.focal_planes) != 1 or len(inst.optical_paths) != 1:
                return ""
            return f"frame {row * inst.tiled_size.width + col + 1} of "
        except Exception:  # wsidicom could not say: the message only loses the frame number
            return ""


def _from_the_network(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a transport or HTTP failure rather than bad frame bytes."""
    import ssl

    import requests
    import urllib3

    # not OSError as a whole: PIL reports a broken JPEG stream as one
    network = (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (*network, ssl.SSLError)):
            return True
        if getattr(getattr(exc, "response", None), "status_code", None) is not None:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def open_dicomweb(url: str, credentials: Credentials | None = None, options: DicomWebOptions | None = None) -> Slide:
    """Open ``dicomweb+http(s)://.../studies/<StudyUID>/series/<SeriesUID>`` lazily.

    ``credentials`` default to the environment, else the OS keyring (``Credentials.for_server``). Raises
    ``SeriesNotFoundError``, ``NotASlideError``, ``DicomWebAuthError`` or ``DicomWebConnectionError`` (all
    ``SlideError``).
    """
    try:
        address = DicomWebAddress.parse(url)
    except ValueError as exc:
        raise SlideError(str(exc)) from exc
    if address.study_uid is None or address.series_uid is None:
        missing = "/series/<SeriesInstanceUID>" if address.study_uid else "/studies/<StudyUID>/series/<SeriesUID>"
        raise SlideError(f"{address.url}: a slide is one series of a study; append {missing}")
    options = options or DicomWebOptions()
    credentials = Credentials.for_server(address.root) if credentials is None else credentials
    connection = DicomWebConnection(address.root, credentials, options)
    try:
        wsi = _open_series(connection, address)
    except BaseException:
        connection.close()
        raise
    try:
        identity = pyramid_identity(wsi)
        path = _series_path(str(_display_path(address)), identity, address.url)
        levels = [DicomWebTileLevel(connection, str(path), wsi, lvl) for lvl in wsi.levels]
        reader = TileReader(levels, cache_bytes=options.cache_bytes, workers=options.workers)
        reader.display_wait_s = options.display_wait_s  # a slow or hung archive never freezes the viewer
        mpp, source = pixel_spacing_mpp(wsi)
        props = {
            "dicom.levels": [lvl.level for lvl in wsi.levels],
            "dicomweb.root": address.root,
            "dicom.StudyInstanceUID": address.study_uid,
            "dicom.SeriesInstanceUID": address.series_uid,
            "dicom.pyramid": list(identity),  # what slide_fingerprint keys the feature cache on
        }
        info = SlideInfo(path, "dicomweb", mpp, source, props, url=address.url)
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
