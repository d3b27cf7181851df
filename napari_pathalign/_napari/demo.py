"""The demo window: napari with the plugin, the sample slide and the slide-information dock."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import napari

from napari_pathalign._napari.preferences import claim_slide_extensions
from napari_pathalign._napari.sample_data import DEMO_SLIDE

PLUGIN = "napari-pathalign"


def build_viewer(show: bool = True) -> napari.Viewer:
    claim_slide_extensions()
    viewer = napari.Viewer(title="napari-pathalign demo", show=show)
    viewer.open_sample(PLUGIN, "cmu1-small-region")
    if (files("napari_pathalign.resources") / DEMO_SLIDE).is_file():
        demo = viewer.open_sample(PLUGIN, "demo-lymph-node")[0]
        cmu1 = viewer.layers[0]
        gap_um = 200.0
        demo.translate = (0.0, cmu1.extent.world[1][1] + gap_um)  # beside the real slide, in µm
    viewer.window.add_plugin_dock_widget(PLUGIN, "Slide information")
    viewer.layers.selection.active = viewer.layers[0]
    viewer.scale_bar.visible = True  # the slide is in µm: the bar shows it
    viewer.window.resize(1500, 950)
    viewer.reset_view()
    return viewer


def run_demo(screenshot: Path | None = None) -> Path | None:
    """Open the demo window; with ``screenshot``, save the whole window there and close it."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = build_viewer(show=True)
    if screenshot is None:
        QTimer.singleShot(200, viewer.reset_view)  # fit again once the docks have taken their width
        napari.run()
        return None
    for _ in range(10):  # let the window lay out its docks
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(20):  # let napari fetch the visible tiles and draw them
        QApplication.processEvents()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
    viewer.close()
    return screenshot
