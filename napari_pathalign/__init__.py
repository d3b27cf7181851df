"""napari-pathalign: PathAlign-style vision-language models for whole-slide images, in napari."""

__version__ = "0.1.0"
