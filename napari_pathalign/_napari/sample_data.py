"""Sample data: the real CMU-1-Small-Region Aperio slide (CC0, OpenSlide test data), shipped in resources/."""

from __future__ import annotations

from importlib.resources import files

from napari_pathalign._napari.layers import slide_layer_data
from napari_pathalign.io import open_slide

SAMPLE_SLIDE = "CMU-1-Small-Region.svs"


def sample_slide_path():
    return files("napari_pathalign.resources") / SAMPLE_SLIDE


def cmu1_small_region() -> list[tuple]:
    return slide_layer_data(open_slide(str(sample_slide_path())))
