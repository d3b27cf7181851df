"""Sample data shipped in resources/: the real CMU-1-Small-Region Aperio slide (CC0, OpenSlide test
data), and a demo lymph-node slide assembled from held-out PatchCamelyon tiles (CC0)."""

from __future__ import annotations

from importlib.resources import files

from napari_pathalign._napari.layers import slide_layer_data
from napari_pathalign.io import open_slide

SAMPLE_SLIDE = "CMU-1-Small-Region.svs"
DEMO_SLIDE = "demo-lymph-node.tif"  # built by scripts/train_embedded_model.py from PCam valid tiles


def sample_slide_path():
    return files("napari_pathalign.resources") / SAMPLE_SLIDE


def cmu1_small_region() -> list[tuple]:
    return slide_layer_data(open_slide(str(sample_slide_path())))


def demo_lymph_node() -> list[tuple]:
    path = files("napari_pathalign.resources") / DEMO_SLIDE
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo slide {DEMO_SLIDE} is not in this installation; run scripts/train_embedded_model.py --ship"
        )
    return slide_layer_data(open_slide(str(path)))
