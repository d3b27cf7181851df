"""Dock widget: the selected slide's metadata, and its label / macro images on explicit request.

Label and macro images can carry patient names and accession numbers, so they are never added
automatically; the user presses a button that says what it will show.
"""

from __future__ import annotations

import napari
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from napari_pathalign.io import Slide


def slide_of(layer) -> Slide | None:
    """The ``Slide`` behind a layer this plugin created, else None."""
    return layer.metadata.get("slide") if layer is not None and hasattr(layer, "metadata") else None


def slide_layer_of(viewer):
    """The active slide layer, else the only slide in the viewer, else None."""
    active = viewer.layers.selection.active
    if slide_of(active) is not None:
        return active
    slides = [layer for layer in viewer.layers if slide_of(layer) is not None]
    return slides[0] if len(slides) == 1 else None


def describe(slide: Slide) -> str:
    h, w = slide.shape_level0
    mpp = f"{slide.mpp:.4g} µm/px (~{10 / slide.mpp:.0f}x)" if slide.mpp else "unknown: pixel units"
    levels = ", ".join(f"{lw}x{lh}" for lh, lw in slide.level_shapes)
    return (
        f"<b>{slide.path.name}</b><br>format: {slide.format}<br>size: {w} x {h} px<br>"
        f"resolution: {mpp}<br><small>({slide.mpp_source})</small><br>levels: {levels}<br>"
        f"stored tile: {slide.tile_size[1]} x {slide.tile_size[0]} px<br>"
        f"associated images: {', '.join(slide.associated) or 'none'}"
    )


class SlideInfoWidget(QWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.info = QLabel("Select a slide layer.")
        self.info.setWordWrap(True)
        self.show_associated = QPushButton("Show label && macro images (may contain patient identifiers)")
        self.show_associated.clicked.connect(self.add_associated_layers)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addWidget(self.show_associated)
        layout.addStretch()
        self.viewer.layers.selection.events.active.connect(self._refresh)
        self._refresh()

    def _slide(self) -> Slide | None:
        return slide_of(self.viewer.layers.selection.active)

    def _refresh(self, event=None) -> None:
        slide = self._slide()
        self.info.setText(describe(slide) if slide else "Select a slide layer opened by PathAlign.")
        self.show_associated.setEnabled(bool(slide and slide.associated))

    def add_associated_layers(self) -> list:
        """Add each associated image as its own layer, as tall as the slide and placed to its right."""
        layer = self.viewer.layers.selection.active
        slide = slide_of(layer)
        if slide is None:
            return []
        (top, left), (bottom, right) = layer.extent.world[0][:2], layer.extent.world[1][:2]
        gap = 0.05 * (right - left)
        added, x = [], right + gap
        for name, image in slide.associated.items():
            s = (bottom - top) / image.shape[0]  # associated images have no calibrated scale
            new = self.viewer.add_image(
                image, rgb=True, name=f"{layer.name} [{name}]", scale=(s, s), translate=(top, x), units=layer.units
            )
            added.append(new)
            x += image.shape[1] * s + gap
        self.viewer.layers.selection.active = layer
        return added
