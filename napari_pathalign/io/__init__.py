"""Slide readers: any supported whole-slide image -> a lazy, micrometre-aware pyramid.

``open_slide`` is the single entry point; it picks the backend from the file's content
(not its extension) and says which one it used in ``Slide.format``. ``read_annotations`` and
``write_annotations`` read and write what is drawn on a slide (QuPath GeoJSON, ASAP XML).
"""

from napari_pathalign.io.annotations import Annotation, check_bounds, read_annotations, write_annotations
from napari_pathalign.io.errors import SlideError
from napari_pathalign.io.open import open_slide
from napari_pathalign.io.slide import Slide

__all__ = [
    "Annotation",
    "Slide",
    "SlideError",
    "check_bounds",
    "open_slide",
    "read_annotations",
    "write_annotations",
]
