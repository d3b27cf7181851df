"""The demo window: napari with the plugin, the sample slide and the slide-information dock."""

from __future__ import annotations

from pathlib import Path

import napari

from napari_pathalign._napari.preferences import claim_slide_extensions

PLUGIN = "napari-pathalign"


def build_viewer(show: bool = True) -> napari.Viewer:
    claim_slide_extensions()
    viewer = napari.Viewer(title="napari-pathalign demo", show=show)
    viewer.open_sample(PLUGIN, "cmu1-small-region")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Slide information")
    viewer.layers.selection.active = viewer.layers[0]
    viewer.scale_bar.visible = True  # the slide is in µm: the bar shows it
    viewer.window.resize(1500, 950)
    viewer.reset_view()
    return viewer


def run_demo(screenshot: Path | None = None) -> Path | None:
    """Open the demo window; with ``screenshot``, save the whole window there and close it."""
    viewer = build_viewer(show=True)
    if screenshot is None:
        napari.run()
        return None
    from qtpy.QtWidgets import QApplication

    for _ in range(20):  # let napari fetch the visible tiles and draw them
        QApplication.processEvents()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
    viewer.close()
    return screenshot
