"""Dock "Measure": every shape of the active Shapes layer measured live (lines in µm / mm, regions in mm²),
the length or area written beside the shape on the canvas, tissue fractions on request, CSV export."""

from __future__ import annotations

import math

import napari
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout

from napari_pathalign._napari.annotation_layers import shape_parts
from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.slide_info import slide_layer_of, slide_of
from napari_pathalign.io.csv_table import write_csv
from napari_pathalign.tiling.region_stats import Measurement, measure

COLUMNS = ("shape", "class", "length", "area", "tissue")
FOLLOW_MS = 60  # a drag moves vertices hundreds of times a second; measure at most this often


@thread_worker(progress=False)
def _tissue_mask(slide):
    from napari_pathalign.tiling.tissue import tissue_mask

    return tissue_mask(slide)


def length_text(um: float) -> str:
    if math.isnan(um):
        return ""
    return f"{um / 1000:.2f} mm" if um >= 1000 else f"{um:.0f} µm" if um >= 10 else f"{um:.1f} µm"


def area_text(mm2: float) -> str:
    return "" if math.isnan(mm2) else f"{mm2:.3f} mm²" if mm2 >= 0.001 else f"{mm2 * 1e6:.0f} µm²"


class MeasureDock(SlideDock):
    title = "Measure"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(["#", "class", "length / perimeter", "area", "tissue"])
        self.tissue_button = QPushButton("Tissue fraction")
        self.tissue_button.setToolTip("The share of each region the tissue detector calls tissue")
        self.tissue_button.clicked.connect(self.compute_tissue)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._ask_export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.tissue_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.remeasure)
        self.shapes = None  # the Shapes layer measured
        self.masks: dict = {}  # tissue masks by slide path, computed once
        self.measurements: list[Measurement] = []
        self.say("Draw lines or regions on a Shapes layer (select it): they are measured as you draw.")
        self.follow_slide_selection()

    # ------------------------------------------------------------------ following the Shapes layer
    def layer_changed(self, *_) -> None:
        layer = self.viewer.layers.selection.active
        if not isinstance(layer, napari.layers.Shapes) or layer is self.shapes:
            return
        if self.shapes is not None:
            for emitter in (self.shapes.events.data, self.shapes.events.set_data):
                emitter.disconnect(self._changed)
        self.shapes = layer
        self.connect_viewer(layer.events.data, self._changed)
        self.connect_viewer(layer.events.set_data, self._changed)
        self.remeasure()

    def _changed(self, *_) -> None:
        if not self._timer.isActive():
            self._timer.start(FOLLOW_MS)

    # ------------------------------------------------------------------ measuring
    def remeasure(self) -> list[Measurement]:
        """Measure every shape of the followed layer; the table and the text on the canvas follow."""
        layer, slide_layer = self.shapes, slide_layer_of(self.viewer)
        if layer is None or slide_layer is None:
            return []
        slide = slide_of(slide_layer)
        mask = self.masks.get(str(slide.path))
        classes = list(layer.features["class"]) if "class" in layer.features.columns else [""] * len(layer.data)
        rows = [
            measure(i, kind, rings, slide.mpp, classes[i] if isinstance(classes[i], str) else "", mask)
            for i, kind, rings in shape_parts(layer, slide_layer)
        ]
        self.measurements = rows
        self._show(layer, rows, bool(slide.mpp))
        return rows

    def _show(self, layer, rows: list[Measurement], calibrated: bool) -> None:
        texts = [""] * len(layer.data)  # a hole is measured with its region, and says nothing itself
        for m in rows:
            texts[m.shape] = (
                (length_text(m.length_um) if m.kind == "line" else area_text(m.area_mm2)) if calibrated else "no µm/px"
            )
        if len(layer.data):
            features = layer.features.copy()
            features["measure"] = texts
            layer.features = features
            layer.text = {"string": "{measure}", "color": "black", "size": 12, "anchor": "center"}
        self.table.setRowCount(len(rows))
        for r, m in enumerate(rows):
            tissue = "" if math.isnan(m.tissue_fraction) else f"{m.tissue_fraction:.0%}"
            cells = (str(m.shape), m.classification, length_text(m.length_um), area_text(m.area_mm2), tissue)
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        if not calibrated:
            self.say("This slide has no µm/px: lengths and areas cannot be given in µm.", error=True)

    def compute_tissue(self):
        """Find the slide's tissue once (in a worker), then give each region its tissue fraction."""
        slide_layer = slide_layer_of(self.viewer)
        if slide_layer is None:
            self.say("Open a slide first.", error=True)
            return None
        slide = slide_of(slide_layer)
        if str(slide.path) in self.masks:
            self.remeasure()
            return None
        self.say("Finding tissue …")
        worker = _tissue_mask(slide, _ignore_errors=True)
        worker.returned.connect(lambda mask: self._tissue_found(slide, mask))
        worker.errored.connect(lambda exc: self.say(str(exc), error=True))
        return self.start_worker(worker)

    def _tissue_found(self, slide, mask) -> None:
        self.masks[str(slide.path)] = mask
        self.remeasure()
        self.say(f"Tissue found ({mask.tissue_fraction:.0%} of the slide); fractions are per region.")

    # ------------------------------------------------------------------ export
    def _ask_export(self, *_):
        path, _ = QFileDialog.getSaveFileName(self, "Export measurements", "measurements.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path, overwrite=True)

    def export_csv(self, path, overwrite: bool = False):
        """The measurements (µm, mm², fraction) as CSV; returns the path, or None when refused."""
        rows = self.remeasure()
        if not rows:
            self.say("Nothing to export: select a Shapes layer with lines or regions.", error=True)
            return None
        try:
            written = write_csv(rows, path, overwrite=overwrite)
        except (ValueError, OSError) as exc:
            self.say(str(exc), error=True)
            return None
        self.say(f"Wrote {len(rows)} measurements to {written.name}.")
        return written
