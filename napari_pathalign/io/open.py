"""``open_slide``: pick the reader backend from the file's content, never from its extension."""

from __future__ import annotations

import os
from pathlib import Path

from napari_pathalign.io.errors import SlideError
from napari_pathalign.io.slide import Slide

SUPPORTED = (
    "Aperio SVS, generic tiled TIFF, OME-TIFF, Hamamatsu NDPI, DICOM WSI (.dcm or a folder of them, "
    "or dicomweb+https://... for a series on a DICOMweb server)"
)
DICOMWEB_SCHEMES = ("dicomweb+http://", "dicomweb+https://")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_OTHER_MAGIC = {  # common look-alikes, named so that the error tells the user what the file really is
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"PK\x03\x04": "a ZIP archive",
    b"%PDF": "a PDF document",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
}


def open_slide(path: str | os.PathLike) -> Slide:
    """Open a whole-slide image lazily; raises ``SlideError`` naming the file and the problem.

    ``path`` is a file, a DICOM folder, or a series on a DICOMweb server:
    ``dicomweb+https://host/<root>/studies/<StudyUID>/series/<SeriesUID>`` (see ``io/dicomweb.py``).
    """
    if isinstance(path, str) and path.lower().startswith(DICOMWEB_SCHEMES):
        from napari_pathalign.io.dicomweb_slide import open_dicomweb

        return open_dicomweb(path)
    if isinstance(path, str) and path.lower().startswith(("http://", "https://")):
        raise SlideError(
            "a web address is not a slide file; for a series on a DICOMweb server write "
            "dicomweb+https://host/<DICOMweb root>/studies/<StudyUID>/series/<SeriesUID>"
        )
    path = Path(path).expanduser()
    if not path.exists():
        raise SlideError(f"{path}: no such file or folder")
    if path.is_dir():
        from napari_pathalign.io.dicom import open_dicom

        return open_dicom(path)
    size = path.stat().st_size
    if size == 0:
        raise SlideError(f"{path}: the file is empty (0 bytes); it was probably not copied completely")
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[:4] in _TIFF_MAGIC:
        from napari_pathalign.io.tiff import open_tiff

        return open_tiff(path)
    if head[128:132] == b"DICM":
        from napari_pathalign.io.dicom import open_dicom

        return open_dicom(path)
    what = next((name for magic, name in _OTHER_MAGIC.items() if head.startswith(magic)), None)
    found = f"it is {what}" if what else f"its first bytes {head[:8]!r} match no slide format"
    raise SlideError(f"{path}: not a whole-slide image ({found}, whatever its extension says); supported: {SUPPORTED}")
