"""Where the shipped files are: ``resources/`` as installed (the package ``napari_pathalign.resources``)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RESOURCES = Path(str(files("napari_pathalign.resources")))
