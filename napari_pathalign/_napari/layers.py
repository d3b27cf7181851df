"""Turn a ``Slide`` into napari layer data: multiscale RGB, scaled in µm when the file says so."""

from __future__ import annotations

from napari.utils.notifications import show_warning

from napari_pathalign._napari.remote_display import watch_remote_display
from napari_pathalign.io import Slide


def slide_layer_data(slide: Slide, name: str | None = None) -> list[tuple]:
    """One multiscale RGB image layer; adding it reads only the tiles napari puts on screen."""
    watch_remote_display(slide)  # a slide on a server: slow tiles are drawn blank, said, and redrawn on arrival
    name = name or slide.path.name
    if slide.mpp:
        scale, units = (slide.mpp, slide.mpp), ("µm", "µm")
    else:
        scale, units = (1.0, 1.0), ("pixel", "pixel")
        show_warning(f"{name}: {slide.mpp_source}; shown in pixel units, not micrometres")
    meta = {
        "slide": slide,  # widgets read regions and associated images through it
        "file": str(slide.path),
        "format": slide.format,
        "mpp": slide.mpp,
        "mpp_source": slide.mpp_source,
        "shape_level0": slide.shape_level0,
        "downsamples": slide.downsamples,
    }
    kwargs = {
        "name": name,
        "rgb": True,
        "multiscale": True,
        "contrast_limits": (0, 255),
        "scale": scale,
        "units": units,
        "metadata": meta,
    }
    return [(slide.levels, kwargs, "image")]
