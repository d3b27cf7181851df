"""The slide library: FAISS indexes of slide and report vectors over a SQLite database, in one folder.

Embeddings come in as numpy arrays; this package never imports torch, transformers, napari or Qt.
"""

from napari_pathalign.index.library import Library
from napari_pathalign.index.records import Hit, LibraryError, LibraryInfo, SlideRecord

__all__ = ["Hit", "Library", "LibraryError", "LibraryInfo", "SlideRecord"]
