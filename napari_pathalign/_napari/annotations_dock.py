"""Dock "Annotations": import QuPath GeoJSON / ASAP XML onto the slide, export Shapes and Points back.

Reading, checking and building the layers (with their triangulation) run in a worker, so a file of
100,000 cells does not freeze the window; only adding the finished layers happens on the GUI thread.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import napari
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QVBoxLayout

from napari_pathalign._napari.annotation_layers import annotation_layers, annotations_of_layer
from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.slide_geometry import camera_of
from napari_pathalign._napari.slide_info import slide_layer_of
from napari_pathalign.core.gc_pause import cycle_collector_paused, release_frozen
from napari_pathalign.io import check_bounds, read_annotations, write_annotations

OUTLINE_PX = 2.0  # outlines keep about this width on screen at any zoom, as in QuPath
FOLLOW_MS = 60  # zoom events are gathered: the outlines are re-drawn at most this often
MAX_RESIZED = 5000  # larger layers (cell detections) keep their width: re-drawing them would stall the window
FILE_FILTER = "Annotations (*.geojson *.json *.xml);;QuPath GeoJSON (*.geojson *.json);;ASAP XML (*.xml)"


@thread_worker(progress=False)
def _read_layers(path: Path, slide_layer):
    with cycle_collector_paused():  # its passes over the file's millions of lists would freeze the window
        annotations = read_annotations(path)
        h0, w0 = slide_layer.metadata["shape_level0"]
        check_bounds(annotations, w0, h0)
        return annotations, annotation_layers(annotations, slide_layer, path.stem)


def summary(annotations) -> str:
    """'6 objects: 2 Tumor, 1 Stroma, 3 unclassified'."""
    counts = Counter(a.classification or "unclassified" for a in annotations)
    return f"{len(annotations)} objects: " + ", ".join(f"{n} {name}" for name, n in counts.most_common())


class AnnotationsDock(SlideDock):
    title = "Annotations"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("QuPath GeoJSON (.geojson, .json) or ASAP XML (.xml), in level-0 pixels")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("The selected Shapes / Points layers as QuPath GeoJSON (or ASAP XML)")
        self.import_button.clicked.connect(self._ask_import)
        self.export_button.clicked.connect(self._ask_export)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch()
        self.say("Import QuPath or ASAP annotations onto the open slide, or export drawn shapes.")
        self.imported: list = []  # the layers the last import added
        self.frozen: list = []  # every imported layer still open: its objects sit in the collector's frozen set
        self.connect_viewer(self.viewer.layers.events.removed, self._layer_removed)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.fit_outlines)
        self.connect_viewer(camera_of(self.viewer).events.zoom, self._zoomed)

    # ------------------------------------------------------------------ import
    def _ask_import(self, *_):
        path, _ = QFileDialog.getOpenFileName(self, "Import annotations", "", FILE_FILTER)
        if path:
            self.import_file(path)

    def import_file(self, path):
        """Read ``path`` in a worker and add its layers on the slide; returns the worker (None if refused)."""
        slide_layer = slide_layer_of(self.viewer)
        if slide_layer is None:
            self.say("Open a slide first (or select one): annotations are placed in its level-0 pixels.", error=True)
            return None
        path = Path(path)
        self.say(f"Reading {path.name} …")
        self.import_button.setEnabled(False)
        worker = _read_layers(path, slide_layer, _ignore_errors=True)  # errors go to _failed
        worker.returned.connect(lambda result: self._add_layers(path, slide_layer, *result))
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self.import_button.setEnabled(True))
        return self.start_worker(worker)

    def _add_layers(self, path: Path, slide_layer, annotations, layers) -> None:
        self.imported = [self.viewer.add_layer(layer) for layer in layers]
        self.frozen += self.imported
        if self.imported:
            self.viewer.layers.selection.active = self.imported[0]
        self.fit_outlines()
        self.say(f"{path.name}: {summary(annotations)}")

    def _layer_removed(self, *_) -> None:
        """When the last imported layer is closed, what the imports froze goes back to the cycle collector, so
        nothing closed since (a slide, its cache) stays in memory for want of a collection."""
        if not self.frozen:
            return
        self.frozen = [layer for layer in self.frozen if layer in self.viewer.layers]
        if not self.frozen:
            release_frozen()

    def _zoomed(self, *_) -> None:
        if not self._timer.isActive():
            self._timer.start(FOLLOW_MS)

    def fit_outlines(self) -> None:
        """Imported outlines ~``OUTLINE_PX`` screen pixels wide at the current zoom (napari's are in data units)."""
        zoom = camera_of(self.viewer).zoom
        for layer in self.imported:
            if (
                isinstance(layer, napari.layers.Shapes)
                and 0 < len(layer.data) <= MAX_RESIZED
                and layer in self.viewer.layers
            ):
                layer.edge_width = OUTLINE_PX / (zoom * float(layer.scale[-1]))

    def _failed(self, exc: Exception) -> None:
        self.say(str(exc), error=True)

    # ------------------------------------------------------------------ export
    def _ask_export(self, *_):
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations", "annotations.geojson", FILE_FILTER)
        if path:  # the dialog has asked about replacing an existing file
            self.export_layers(path, overwrite=True)

    def export_layers(self, path, overwrite: bool = False):
        """Write the selected Shapes, Points and imported detection layers to ``path``; returns the path, or
        None when refused."""
        slide_layer = slide_layer_of(self.viewer)
        layers = [
            layer
            for layer in self.viewer.layers.selection
            if isinstance(layer, (napari.layers.Shapes, napari.layers.Points)) or "detections" in layer.metadata
        ]
        if slide_layer is None or not layers:
            self.say("Select the Shapes or Points layers to export, with one slide open.", error=True)
            return None
        annotations = [a for layer in layers for a in annotations_of_layer(layer, slide_layer)]
        try:
            written = write_annotations(annotations, path, overwrite=overwrite)
        except (ValueError, OSError) as exc:
            self.say(str(exc), error=True)
            return None
        self.say(f"Wrote {Path(path).name}: {summary(annotations)}")
        return written
