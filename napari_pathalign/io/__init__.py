"""Slide readers: any supported whole-slide image -> a lazy, micrometre-aware pyramid.

``open_slide`` is the single entry point; it picks the backend from the file's content
(not its extension) and says which one it used in ``Slide.format``.
"""

from napari_pathalign.io.errors import SlideError
from napari_pathalign.io.open import open_slide
from napari_pathalign.io.slide import Slide

__all__ = ["Slide", "SlideError", "open_slide"]
