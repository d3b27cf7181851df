"""Dock "Slide view": magnification (a combo box, Alt-1 ... Alt-6, the current one always on the canvas)
and an overview of the whole slide with the current view on it (click or drag to move there)."""

from __future__ import annotations

import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QComboBox, QLabel, QVBoxLayout

from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.magnification import MAGNIFICATIONS, SHORTCUTS, label, magnification_of, zoom_for
from napari_pathalign._napari.overview_widget import OVERVIEW_SIDE, OverviewWidget
from napari_pathalign._napari.slide_geometry import camera_of
from napari_pathalign._napari.slide_info import slide_layer_of, slide_of

NO_MPP = "magnification unknown: this slide has no µm/px (shown in pixels)"
FOLLOW_MS = 40  # camera events are gathered and drawn at most this often (a drag emits hundreds)


def canvas_size(viewer) -> tuple[int, int]:
    """(height, width) of the canvas in screen pixels."""
    return tuple(viewer.canvas.size) if hasattr(viewer, "canvas") else (600, 800)


class SlideViewDock(SlideDock):
    title = "Slide view"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.magnification = QComboBox()
        self.magnification.addItem("magnification …")
        for m in MAGNIFICATIONS:
            self.magnification.addItem(f"{label(m)}   ({SHORTCUTS[m]})", m)
        self.magnification.activated.connect(self._chosen)
        self.current = QLabel("")
        self.overview = OverviewWidget()
        self.overview.clicked.connect(self.centre_on)
        layout = QVBoxLayout(self)
        layout.addWidget(self.magnification)
        layout.addWidget(self.current)
        layout.addWidget(self.overview)
        layout.addWidget(self.status)
        layout.addStretch()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refresh_view)
        self.slide_layer = None
        for m, key in SHORTCUTS.items():
            self.viewer.bind_key(key, self._shortcut(m), overwrite=True)
        camera = camera_of(self.viewer).events
        self.connect_viewer(camera.zoom, self._camera_moved)
        self.connect_viewer(camera.center, self._camera_moved)
        self.connect_viewer(self.viewer.layers.events.inserted, self.layer_changed)
        self.connect_viewer(self.viewer.layers.events.removed, self.layer_changed)
        self.follow_slide_selection()

    def _shortcut(self, m: float):
        def set_it(viewer):
            self.set_magnification(m)

        set_it.__doc__ = f"Show the slide at {label(m)}"
        return set_it

    def closeEvent(self, event):  # noqa: N802 (Qt)
        for key in SHORTCUTS.values():
            self.viewer.bind_key(key, None)
        super().closeEvent(event)

    # ------------------------------------------------------------------ the slide
    def layer_changed(self, *_) -> None:
        layer = slide_layer_of(self.viewer)
        if layer is self.slide_layer:
            return
        self.slide_layer = layer
        slide = slide_of(layer)
        self.magnification.setEnabled(bool(slide and slide.mpp))
        self.overview.set_thumbnail(slide.thumbnail(OVERVIEW_SIDE) if slide else None)
        self.refresh_view()

    # ------------------------------------------------------------------ magnification
    def _chosen(self, index: int) -> None:
        m = self.magnification.itemData(index)
        if m is not None:
            self.set_magnification(m)

    def set_magnification(self, magnification: float) -> bool:
        """Zoom to ``magnification`` (40 = 0.25 µm per screen pixel) about the view's centre."""
        slide = slide_of(self.slide_layer)
        if slide is None or not slide.mpp:
            self.say(NO_MPP if slide else "Open a slide first.", error=slide is not None)
            return False
        camera_of(self.viewer).zoom = zoom_for(magnification)
        self.refresh_view()
        return True

    def current_magnification(self) -> float | None:
        slide = slide_of(self.slide_layer)
        return magnification_of(camera_of(self.viewer).zoom) if slide is not None and slide.mpp else None

    # ------------------------------------------------------------------ following the camera
    def _camera_moved(self, *_) -> None:
        if not self._timer.isActive():
            self._timer.start(FOLLOW_MS)

    def refresh_view(self) -> None:
        """The magnification text (dock and canvas) and the overview's rectangle, from the camera now."""
        slide = slide_of(self.slide_layer)
        overlay = self.viewer.text_overlay
        if slide is None:
            self.current.setText("No slide open.")
            self.overview.set_view(None)
            return
        m = self.current_magnification()
        text = f"{label(m)}  ({1 / camera_of(self.viewer).zoom:.3g} µm per screen pixel)" if m else NO_MPP
        self.current.setText(text)
        self._show_in_combo(m)
        overlay.text = label(m) if m else "magnification unknown (no µm/px)"
        overlay.position = "top_right"
        overlay.font_size = 14
        overlay.visible = True
        self.overview.set_view(self.view_fractions())

    def _show_in_combo(self, m: float | None) -> None:
        """The combo names the magnification shown: an objective's entry, else the first line says it."""
        index = next(
            (
                k
                for k in range(1, self.magnification.count())
                if m and abs(self.magnification.itemData(k) / m - 1) < 0.01
            ),
            0,
        )
        self.magnification.setItemText(0, f"{label(m)} (between objectives)" if m and index == 0 else "magnification …")
        self.magnification.setCurrentIndex(index)

    def view_fractions(self) -> tuple[float, float, float, float]:
        """The current view as (top, left, bottom, right) fractions of the slide."""
        layer = self.slide_layer
        h0, w0 = layer.metadata["shape_level0"]
        h, w = canvas_size(self.viewer)
        cy, cx = camera_of(self.viewer).center[-2:]
        z = camera_of(self.viewer).zoom
        (sy, sx), (ty, tx) = layer.scale[-2:], layer.translate[-2:]
        top, bottom = ((cy - h / 2 / z - ty) / sy + 0.5) / h0, ((cy + h / 2 / z - ty) / sy + 0.5) / h0
        left, right = ((cx - w / 2 / z - tx) / sx + 0.5) / w0, ((cx + w / 2 / z - tx) / sx + 0.5) / w0
        return top, left, bottom, right

    def centre_on(self, fy: float, fx: float) -> None:
        """Move the camera's centre to (fy, fx), fractions of the slide's height and width."""
        layer = self.slide_layer
        if layer is None:
            return
        h0, w0 = layer.metadata["shape_level0"]
        (sy, sx), (ty, tx) = layer.scale[-2:], layer.translate[-2:]
        camera_of(self.viewer).center = ((fy * h0 - 0.5) * sy + ty, (fx * w0 - 0.5) * sx + tx)
