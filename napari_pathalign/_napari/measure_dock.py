"""Dock "Measure": every shape of the active Shapes layer measured live (lines in µm / mm, regions in mm²),
the length or area written beside the shape on the canvas, tissue fractions on request, the model's view of
each region on request (its patches' zero-shot classes, the shown heatmap's mean and max), CSV export."""

from __future__ import annotations

import math

import napari
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from napari_pathalign._napari.annotation_layers import shape_parts
from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.heatmap_layers import shown_heatmap
from napari_pathalign._napari.slide_info import slide_layer_of, slide_of
from napari_pathalign.io.csv_table import write_csv
from napari_pathalign.tiling.region_stats import Measurement, measure, with_model_values

COLUMNS = ("shape", "class", "length", "area", "tissue", "patches", "model classes", "heatmap mean / max")
FOLLOW_MS = 60  # a drag moves vertices hundreds of times a second; measure at most this often


@thread_worker(progress=False)
def _tissue_mask(slide):
    from napari_pathalign.tiling.tissue import tissue_mask

    return tissue_mask(slide)


@thread_worker
def _class_maps(registry, slide):
    """The slide's analysis (made once, shared with the other docks), then the model's class map of the slide's
    organ (the one check and chat measure with: the measurement head where it ships one, else zero-shot)."""
    from napari_pathalign.core.generators import mapped
    from napari_pathalign.reporting.claims import checker_of

    analysis = yield from mapped(registry.iter_ready(slide), str)
    checker = checker_of(analysis)
    scope = analysis.in_scope()
    organs = [o.name for o in checker.ontology.organs]
    organ = scope.nearest_organ if scope is not None and scope.nearest_organ in organs else checker.organ("")
    how = checker.method_for(organ)
    maps = {
        c: analysis.heatmap(v, "class-map", f"P({c}) per patch ({how})") for c, v in checker.per_patch(organ).items()
    }
    return organ, maps


def classes_text(fractions: dict) -> str:
    top = sorted(((f, c) for c, f in fractions.items() if not math.isnan(f) and f > 0), reverse=True)[:3]
    return ", ".join(f"{c} {f:.0%}" for f, c in top)


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
        self.table.setHorizontalHeaderLabels(
            ["#", "class", "length", "area", "tissue", "patches", "model classes", "heatmap"]
        )
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(140)
        self.table.horizontalHeaderItem(2).setToolTip("a line's length, a region's perimeter")
        self.table.horizontalHeaderItem(6).setToolTip(
            "each class's share of the region: the model's class map, averaged"
        )
        self.table.horizontalHeaderItem(7).setToolTip("the shown heatmap's mean / max over the region's patches")
        self.tissue_button = QPushButton("Tissue fraction")
        self.tissue_button.setToolTip("The share of each region the tissue detector calls tissue")
        self.tissue_button.clicked.connect(self.compute_tissue)
        self.model_button = QPushButton("Classes and heatmap")
        self.model_button.setToolTip(
            "Per region: each class's share (the model's class map of the slide's organ, averaged over the region's "
            "patches) and the shown heatmap's mean and max over them; analyses the slide if needed"
        )
        self.model_button.clicked.connect(self.compute_model_values)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.clicked.connect(self._ask_export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.tissue_button)
        buttons.addWidget(self.model_button)
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
        self.class_maps: dict = {}  # zero-shot class -> per-patch Heatmap, by slide path (on request)
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
        class_maps, heatmap = self.class_maps.get(str(slide.path)), None
        if class_maps is not None:
            heatmap = shown_heatmap(self.viewer, slide_layer)
        classes = list(layer.features["class"]) if "class" in layer.features.columns else [""] * len(layer.data)
        rows = [
            with_model_values(
                measure(i, kind, rings, slide.mpp, classes[i] if isinstance(classes[i], str) else "", mask),
                rings,
                class_maps,
                heatmap,
            )
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
            heat = "" if math.isnan(m.heatmap_mean) else f"{m.heatmap_mean:.3g} / {m.heatmap_max:.3g}"
            cells = (
                str(m.shape),
                m.classification,
                length_text(m.length_um),
                area_text(m.area_mm2),
                tissue,
                "" if m.patches is None else str(m.patches),
                classes_text(m.class_fractions),
                heat,
            )
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

    def compute_model_values(self):
        """Analyse the slide if needed (in a worker, shared with the other docks), classify its patches, then give
        each region its class shares and the shown heatmap's values."""
        slide_layer = slide_layer_of(self.viewer)
        if slide_layer is None:
            self.say("Open a slide first.", error=True)
            return None
        slide = slide_of(slide_layer)
        self.say("Analysing the slide and classifying its patches …")
        self.model_button.setEnabled(False)
        worker = _class_maps(self.registry, slide, _ignore_errors=True)
        worker.yielded.connect(self.say)
        worker.returned.connect(lambda result: self._classified(slide, *result))
        worker.errored.connect(lambda exc: self.say(f"No model values: {exc}", error=True))
        worker.finished.connect(lambda: self.model_button.setEnabled(True))
        return self.start_worker(worker)

    def _classified(self, slide, organ: str, maps: dict) -> None:
        self.class_maps[str(slide.path)] = maps
        rows = self.remeasure()
        layer = slide_layer_of(self.viewer)
        heat = shown_heatmap(self.viewer, layer) if layer is not None else None
        self.say(
            f"Class shares per region ({organ}: {', '.join(maps)})"
            + (
                f"; heatmap values of '{heat.label}'."
                if heat is not None
                else "; no heatmap is shown (show one in the workspace to get its values)."
            )
            + ("" if rows else " Select a Shapes layer with regions.")
        )

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
