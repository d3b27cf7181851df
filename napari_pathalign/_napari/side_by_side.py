"""Dock "Side by side": a second slide in a second canvas, pan and zoom linked in µm (a switch unlinks them).

The second canvas is a ``napari.components.ViewerModel`` drawn by ``napari.qt.QtViewer``, as in
napari's own example ``examples/multiple_viewer_widget.py``. ``QtViewer`` is exported by ``napari.qt``
but is not part of napari's documented plugin API and may change between releases: it is used here
and nowhere else in the plugin.

Why a second canvas and not napari's grid mode: the grid gives every layer its own cell (a heatmap
would leave the slide it belongs to unless the stride groups them, which breaks as soon as the two
slides have different numbers of layers) and both cells share one camera, so they cannot be unlinked.
"""

from __future__ import annotations

import weakref
from functools import partial
from pathlib import Path

import napari
import numpy as np
from napari.components import ViewerModel
from napari.qt import QtViewer
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
)

from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.slide_geometry import camera_of
from napari_pathalign._napari.slide_info import slide_layer_of, slide_of

DISPLAY_NAME = "Side by side (linked second slide)"  # the dock's name in napari.yaml
FOLLOW_MS = 40  # camera events are gathered and passed on at most this often (a drag emits hundreds)
SLIDE_FILTER = "Slides (*.svs *.tif *.tiff *.ndpi *.dcm);;All files (*)"


def side_by_side_dock(viewer, open_it: bool = True):
    """The viewer's open Side by side dock; docked first when ``open_it`` and none is open, else None."""
    from napari_pathalign._napari.analysis_registry import registry_of
    from napari_pathalign._napari.preferences import PLUGIN

    ref = getattr(registry_of(viewer), "side_by_side", None)
    dock = ref() if ref is not None else None
    if dock is None and open_it and getattr(viewer, "window", None) is not None:
        _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, DISPLAY_NAME)
    return dock


def _let_go(state: dict, *_) -> None:
    """Drop a destroyed dock's second canvas, layers and slide (``state`` is the dock's ``__dict__``)."""
    state["canvas"] = None
    state["slide_layer"] = None  # so that clearing the layers below calls nothing on the destroyed widgets
    owned, state["_owned"] = state.get("_owned"), None
    second = state.get("second")
    if second is not None:
        second.layers.clear()
    if owned is not None:
        owned.close()


class SecondCanvas(QtViewer):
    """The second canvas; a file dropped on it opens there as the second slide (not in the main viewer)."""

    def __init__(self, viewer_model: ViewerModel, open_file):
        super().__init__(viewer_model)
        self.open_file = open_file  # the dock's open_slide

    def _qt_open(self, filenames, stack, *args, **kwargs):  # napari's drop handler calls this
        for name in filenames[:1]:
            self.open_file(name)


class SideBySideDock(SlideDock):
    title = "Side by side"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.second = ViewerModel(title="second slide")
        self.canvas = SecondCanvas(self.second, self.open_slide)
        self.canvas.setMinimumSize(320, 320)
        self.slide_layer = None  # the second slide's layer in self.second
        self._owned = None  # the Slide this dock opened itself (closed when replaced or on close)
        self._applying = False  # True while one camera is being set from the other: its events are echoes
        self._leader = None  # the camera that moved last: "main" or "second"
        self._docked = False  # napari's close button takes a dock out of the window without closing it
        self._split = False  # whether the window was already split half and half between the two canvases
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)  # the canvas takes the dock's height

        self.open_button = QPushButton("Open …")
        self.open_button.setToolTip("Open a second slide here, beside the one in the main canvas")
        self.open_button.clicked.connect(self._choose_file)
        self.close_button = QPushButton("Close slide")
        self.close_button.clicked.connect(self.close_slide)
        self.link = QCheckBox("Link pan and zoom (µm)")
        self.link.setToolTip("Both canvases show the same µm position (from each slide's top-left) and scale")
        self.link.setChecked(True)
        self.link.toggled.connect(self._link_toggled)
        self.about = QLabel("No second slide: Open … a file, drop one on the canvas, or open a similar case here.")
        self.about.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.close_button)
        row.addStretch()
        row.addWidget(self.link)
        layers = self.canvas.layers  # the second canvas's own layer list: show, hide, select its heatmaps
        layers.setMaximumHeight(90)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(row)
        layout.addWidget(self.about)
        layout.addWidget(self.canvas, stretch=1)
        layout.addWidget(layers)
        layout.addWidget(self.status)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.sync_cameras)
        main = camera_of(self.viewer).events
        self.connect_viewer(main.center, self._main_moved)
        self.connect_viewer(main.zoom, self._main_moved)
        second = camera_of(self.second).events
        second.center.connect(self._second_moved)
        second.zoom.connect(self._second_moved)
        self.second.events.status.connect(self._status_from_second)
        self.second.layers.events.removed.connect(self._second_layer_removed)
        self.registry.side_by_side = weakref.ref(self)  # how the Similar cases dock finds this one
        # napari deletes a docked widget with its window without closing it, and a QtViewer still referenced
        # after that counts as leaked: when Qt destroys this dock, its Python side lets go of the canvas too
        self.destroyed.connect(partial(_let_go, self.__dict__))
        self._update_buttons()

    # ------------------------------------------------------------------ opening the second slide
    def _choose_file(self, *_):
        path, _ = QFileDialog.getOpenFileName(self, "Second slide", "", SLIDE_FILTER)
        if path:
            self.open_slide(path)

    def open_slide(self, slide, name: str | None = None):
        """Show ``slide`` (a path or an opened ``Slide``) in the second canvas, replacing the one there.

        Returns its image layer, or None with the reason in the status line.
        """
        from napari_pathalign._napari.layers import slide_layer_data
        from napari_pathalign.io import SlideError, open_slide

        owned = None
        if isinstance(slide, (str, Path)):
            try:
                slide = owned = open_slide(slide)
            except (SlideError, OSError, ValueError) as exc:
                self.say(f"Not opened beside: {exc}", error=True)
                return None
        self.close_slide()
        data, kwargs, _ = slide_layer_data(slide, name=name)[0]
        self.slide_layer = self.second.add_image(data, **kwargs)
        self._owned = owned
        self.second.scale_bar.visible = bool(slide.mpp)
        self.second.reset_view()
        if self.link.isChecked():
            self._leader = "main"
            self.sync_cameras()
        self._describe()
        self._update_buttons()
        return self.slide_layer

    def open_hit(self, hit):
        """Open a similar case (an ``index.Hit``) here, its matched region outlined as in the main viewer."""
        from napari_pathalign._napari.search_widget import matched_region_data

        layer = self.open_slide(hit.path, name=f"hit {hit.rank}: {Path(hit.path).name}")
        if layer is not None and hit.region_xywh:
            data, kwargs, _ = matched_region_data(hit, layer)
            self.second.add_shapes(data, **kwargs)
            self.second.layers.selection.active = layer
        return layer

    def add_layer(self, layer):
        """Put a layer (a heatmap, shapes ...) over the second slide; it stays in this canvas only."""
        return self.second.add_layer(layer)

    def add_heatmap(self, heatmap, smoothed: bool = False):
        """Show a ``Heatmap`` of the second slide over it (same colours and name as in the main viewer)."""
        from napari_pathalign._napari.heatmap_layers import heatmap_layer_data

        if self.slide_layer is None:
            self.say("Open a second slide first.", error=True)
            return None
        data, kwargs, _ = heatmap_layer_data(heatmap, self.slide_layer, smoothed=smoothed)
        layer = self.second.add_image(data, **kwargs)
        self.second.layers.selection.active = self.slide_layer
        return layer

    def close_slide(self, *_):
        """Remove the second slide and every layer over it."""
        self.second.layers.clear()  # _second_layer_removed forgets the slide and closes what this dock opened
        self.second.scale_bar.visible = False

    def _second_layer_removed(self, event):
        if event.value is self.slide_layer:
            self.slide_layer = None
            if self._owned is not None:
                self._owned.close()
                self._owned = None
            self._describe()
            self._update_buttons()

    def _describe(self):
        slide = slide_of(self.slide_layer)
        if slide is None:
            self.about.setText("No second slide: Open … a file, drop one on the canvas, or open a similar case here.")
            return
        h, w = slide.shape_level0
        res = f"{slide.mpp:.3g} µm/px" if slide.mpp else "no µm/px (pixel units)"
        self.about.setText(f"<b>{self.slide_layer.name}</b>: {w} x {h} px, {res}")
        main = slide_of(slide_layer_of(self.viewer))
        if self.link.isChecked() and main is not None and not (main.mpp and slide.mpp):
            self.say("One slide has no µm/px: the link matches pixels, not µm, so sizes differ.", error=True)
        else:
            self.say("")

    def _update_buttons(self):
        self.close_button.setEnabled(self.slide_layer is not None)

    # ------------------------------------------------------------------ linked cameras
    def _main_moved(self, *_):
        self._moved("main")

    def _second_moved(self, *_):
        self._moved("second")

    def _moved(self, who: str):
        if self._applying or not self.link.isChecked() or not self.isVisible():
            return  # an echo of our own setting, unlinked, or hidden (showEvent catches up)
        self._leader = who
        if not self._timer.isActive():
            self._timer.start(FOLLOW_MS)

    def _link_toggled(self, on: bool):
        if on:  # linking again: the second canvas comes to the main's view
            self._leader = "main"
            self.sync_cameras()
        self._describe()

    def sync_cameras(self) -> None:
        """Give the follower the leader's zoom and its centre in µm from its own slide's top-left."""
        if not self.link.isChecked() or self._leader is None:
            return
        main, second = camera_of(self.viewer), camera_of(self.second)
        src, dst = (main, second) if self._leader == "main" else (second, main)
        offset = self._origin_yx(self.slide_layer) - self._origin_yx(slide_layer_of(self.viewer))  # second - main
        if self._leader == "second":
            offset = -offset
        yx = np.asarray(src.center[-2:], float) + offset
        self._applying = True
        try:
            if not np.isclose(dst.zoom, src.zoom, rtol=1e-9):
                dst.zoom = src.zoom
            if not np.allclose(dst.center[-2:], yx, rtol=1e-9, atol=1e-9):
                dst.center = (*dst.center[:-2], *yx)
        finally:
            self._applying = False

    @staticmethod
    def _origin_yx(layer) -> np.ndarray:
        """World (row, col) of a slide's top-left (a hit opened beside the main slide is translated)."""
        return np.zeros(2) if layer is None else np.asarray(layer.translate[-2:], float)

    # ------------------------------------------------------------------ showing, status and closing
    def showEvent(self, event):  # noqa: N802 (Qt)
        super().showEvent(event)
        if not self._split:
            self._split = True
            QTimer.singleShot(0, self.split_evenly)
        if self.link.isChecked():  # the main camera may have moved while this dock was hidden behind a tab
            self._leader = "main"
            self.sync_cameras()

    def split_evenly(self) -> None:
        """Give this dock as much width as the main canvas has, so both slides show at the same size."""
        window, dock = self.window(), self.parent()
        if isinstance(window, QMainWindow) and isinstance(dock, QDockWidget) and not dock.isFloating():
            central = window.centralWidget()
            if central is not None:
                half = (central.width() + dock.width()) // 2
                window.resizeDocks([dock], [half], Qt.Horizontal)

    def event(self, event):
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:  # the dock's close button: napari unparents the widget and never closes it
                QTimer.singleShot(0, self.close)
        return super().event(event)

    def _status_from_second(self, event):
        self.viewer.status = event.value  # the cursor's position and value, in the main status bar

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self._timer.stop()
        if self.canvas is not None:  # the first close only
            for emitter in (camera_of(self.second).events.center, camera_of(self.second).events.zoom):
                emitter.disconnect(self._second_moved)
            self.second.events.status.disconnect(self._status_from_second)
            self.close_slide()
            self.canvas.close()
            self.canvas = None
        ref = getattr(self.registry, "side_by_side", None)
        if ref is not None and ref() is self:
            self.registry.side_by_side = None
        super().closeEvent(event)
