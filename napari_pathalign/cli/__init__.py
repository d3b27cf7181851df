"""The ``pathalign`` command line (``pathalign --help``)."""

from napari_pathalign.cli.main import main

__all__ = ["main"]
