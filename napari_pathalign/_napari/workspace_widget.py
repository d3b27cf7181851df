"""Dock "PathAlign workspace": analyse the selected slide, then explore attention, text -> region and
zero-shot maps as layers over the slide, read values, and export them.

Thin by design: models run in ``SlideAnalysis`` (shared per layer through the viewer's registry) in
``thread_worker``s; this file turns its ``Heatmap``s into layers and text.
"""

from __future__ import annotations

from pathlib import Path

import napari
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QTabWidget,
    QVBoxLayout,
)

from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.heatmap_layers import (
    colorbar_rgb,
    contrast_limits,
    heatmap_layer_data,
    thumbnail_rgb,
)
from napari_pathalign._napari.slide_geometry import level0_of_world, scope_polygon
from napari_pathalign._napari.slide_info import slide_of
from napari_pathalign._napari.workspace_panels import AttentionPanel, TextPanel, ZeroShotPanel, pixmap_of

MODELS = ["embedded", "embedded-r"]
COLORMAPS = ["inferno", "viridis", "magma", "turbo", "plasma", "red"]


@thread_worker
def _analyse_worker(registry, slide, model, retrieval, encoder, weights, device):
    from napari_pathalign.core.progress import Progress
    from napari_pathalign.reporting.analysis import SlideAnalysis

    yield Progress("models", 0, 3, "Loading the models ...")
    g = registry.model(model, device)
    r = registry.model(retrieval, device) if retrieval else None
    enc = registry.encoder(encoder, weights, device)
    analysis = SlideAnalysis(slide, encoder=enc, model=g, retrieval_model=r, device=device)
    yield from analysis.iter_prepare()
    analysis.gallery = [thumbnail_rgb(h) for h in analysis.query_heatmaps()]  # numpy work off the GUI thread
    return analysis


@thread_worker
def _warm_up(registry, device):
    """Import torch/transformers and load the default models while the user looks at the dock.

    Importing torch's C extension holds the GIL for a few hundred ms; done here, it does not stall
    the window in the middle of an Analyse.
    """
    for name in MODELS:
        registry.model(name, device)
    registry.encoder("embedded", None, device)


@thread_worker
def _compute(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _region_zero_shot(analysis, polygon, classes):
    """Zero-shot of a region's patches (the view, or a drawn or imported shape): re-encoded, then classified."""
    return analysis.region(polygon).zero_shot(classes)


class WorkspaceWidget(SlideDock):
    title = "PathAlign"

    def __init__(self, napari_viewer: napari.Viewer):
        from napari_pathalign.models.encoders import available_encoders
        from napari_pathalign.reporting.ontology import load_ontology

        super().__init__(napari_viewer)
        self.job_layer = None  # the slide layer the running Analyse belongs to
        self.heatmap_layer = None  # the layer showing the current heatmap
        self.confirm_overwrite = self._ask_overwrite  # tests replace it
        # -- models and Analyse
        self.slide_label = QLabel("Select a slide layer.")
        self.slide_label.setWordWrap(True)
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(MODELS)
        self.retrieval = QComboBox()
        self.retrieval.setEditable(True)
        self.retrieval.addItems(["embedded-r", "(same as the generation model)"] + MODELS[:1])
        self.encoder = QComboBox()
        self.encoder.addItems([n for n in available_encoders() if n != "test-tiny"])
        self.encoder.setCurrentText("embedded")
        self.weights = QLineEdit()
        self.weights.setPlaceholderText("encoder weights (empty: the shipped ones)")
        browse = QPushButton("Model folder ...")
        browse.clicked.connect(self._browse_model)
        self.analyse_button = QPushButton("Analyse")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        form = QFormLayout()
        form.addRow("generation model", self.model)
        form.addRow("retrieval model", self.retrieval)
        form.addRow("patch encoder", self.encoder)
        form.addRow("encoder weights", self.weights)
        buttons = QHBoxLayout()
        for b in (browse, self.analyse_button, self.cancel_button):
            buttons.addWidget(b)
        # -- panels
        sets, default = load_ontology().class_sets()  # the embedded model's; each analysis brings its own
        self.attention = AttentionPanel()
        self.text = TextPanel()
        self.zero_shot = ZeroShotPanel(sets, default)
        self.tabs = QTabWidget()
        for panel, title in (
            (self.attention, "Attention"),
            (self.text, "Text → region"),
            (self.zero_shot, "Zero-shot"),
        ):
            scroll = QScrollArea()  # the dock fits a laptop screen; long panels scroll
            scroll.setWidgetResizable(True)
            scroll.setWidget(panel)
            self.tabs.addTab(scroll, title)
        self.tabs.setMinimumHeight(260)
        self.tabs.setEnabled(False)
        # -- display of the current heatmap
        self.normalisation = QComboBox()
        self.normalisation.addItems(["raw", "percentile", "rank"])
        self.colormap = QComboBox()
        self.colormap.addItems(COLORMAPS)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        self.smoothed = QCheckBox("smoothed (cosmetic: blurs between patches)")
        self.colorbar = QLabel()
        self.range_label = QLabel("")
        self.readout = QLabel("Click the slide to read a patch's value.")
        self.readout.setWordWrap(True)
        display = QFormLayout()
        display.addRow("normalisation", self.normalisation)
        display.addRow("colormap", self.colormap)
        display.addRow("opacity", self.opacity)
        display.addRow(self.smoothed)
        display.addRow(self.colorbar)
        display.addRow(self.range_label)
        exports = QHBoxLayout()
        self.export_buttons = {}
        for suffix, text in ((".geojson", "GeoJSON (QuPath)"), (".h5", "h5"), (".png", "PNG")):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, s=suffix: self._export_dialog(s))
            b.setEnabled(False)
            exports.addWidget(b)
            self.export_buttons[suffix] = b
        layout = QVBoxLayout(self)
        layout.addWidget(self.slide_label)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.insertWidget(1, self.scope_banner)
        layout.addWidget(self.status)
        layout.addWidget(self.tabs)
        layout.addLayout(display)
        layout.addWidget(self.readout)
        layout.addWidget(QLabel("Export the current map:"))
        layout.addLayout(exports)
        layout.addStretch()
        # -- wiring
        self.analyse_button.clicked.connect(self.analyse)
        self.cancel_button.clicked.connect(self.cancel)
        self.attention.show_requested.connect(lambda kw: self._show(self.analysis.attention_heatmap, **kw))
        self.text.show_requested.connect(self.show_text)
        self.zero_shot.run_requested.connect(self.run_zero_shot)
        self.zero_shot.class_clicked.connect(self.show_class)
        self.normalisation.currentTextChanged.connect(self._restyle)
        self.colormap.currentTextChanged.connect(self._restyle)
        self.smoothed.toggled.connect(self._restyle)
        self.opacity.valueChanged.connect(self._set_opacity)
        self.connect_viewer(self.viewer.layers.events.removed, self._layer_removed)
        self.add_mouse_callback(self._on_click)
        self.current = None  # the raw Heatmap shown
        self.last_zero_shot = None
        self._last_status = 0.0  # time of the last progress text (Qt repaints the dock on each)
        self.follow_slide_selection()
        self.warm_up = _warm_up(self.registry, "auto", _ignore_errors=True)  # a failure shows at Analyse instead
        self.warm_up.start()

    # ------------------------------------------------------------------ state
    @property
    def slide_layer(self):
        """The active slide layer; for a heatmap, its slide; for any other layer (a Shapes layer whose region is
        being selected), the slide last followed while it is open."""
        layer = self.viewer.layers.selection.active
        if slide_of(layer) is not None:
            self._followed = layer
            return layer
        meta = getattr(layer, "metadata", {}) or {}
        name = meta.get("slide_layer")
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        followed = getattr(self, "_followed", None)
        return followed if followed is not None and followed in self.viewer.layers else None

    @property
    def analysis(self):
        layer = self.slide_layer
        return self.registry.get(slide_of(layer)) if layer is not None else None

    def layer_changed(self, *_):
        layer = self.slide_layer
        if layer is None:
            self.slide_label.setText("Select a slide layer opened by PathAlign.")
            self.tabs.setEnabled(False)
            return
        a = self.analysis
        slide = slide_of(layer)
        mpp = f"{slide.mpp:.3g} µm/px" if slide.mpp else "no µm/px: cannot be analysed"
        self.slide_label.setText(f"<b>{layer.name}</b> ({mpp})")
        self.tabs.setEnabled(a is not None and a.ready)
        self.show_scope(a.in_scope() if a is not None and a.ready else None)
        self.zero_shot.scope = self.scope_banner.scope
        if a is not None and a.ready:
            self.attention.set_shape(*a.attention_shape)

    def _busy(self, busy: bool) -> None:
        self.status.setStyleSheet("")
        self.analyse_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    # ------------------------------------------------------------------ Analyse
    def _browse_model(self, *_):
        folder = QFileDialog.getExistingDirectory(self, "PathAlign checkpoint folder")
        if folder:
            self.model.setCurrentText(folder)

    def analyse(self, *_):
        layer = self.slide_layer
        slide = slide_of(layer)
        if slide is None:
            self.say("Select a slide layer opened by PathAlign first.", error=True)
            return None
        if slide.mpp is None:
            self.say(
                (
                    f"{layer.name} has no microns-per-pixel metadata ({slide.mpp_source}); PathAlign places patches "
                    "in µm and cannot analyse it. Re-export the slide with its resolution."
                ),
                error=True,
            )
            return None
        retrieval = self.retrieval.currentText()
        retrieval = None if retrieval.startswith("(same") else retrieval
        weights = self.weights.text().strip() or None
        worker = _analyse_worker(
            self.registry,
            slide,
            self.model.currentText(),
            retrieval,
            self.encoder.currentText(),
            weights,
            "auto",
            _ignore_errors=True,
        )
        self.job_layer = layer
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda a, layer=layer: self._on_ready(layer, a))
        worker.errored.connect(lambda exc: self.say(f"Analyse failed: {exc}", error=True))
        worker.aborted.connect(lambda layer=layer: self._on_aborted(layer))
        worker.finished.connect(lambda: (self._busy(False), setattr(self, "job_layer", None)))
        self._busy(True)
        self.progress.setValue(0)
        return self.start_worker(worker)

    cancel = SlideDock.stop  # the Cancel button

    def _on_aborted(self, layer):
        if layer not in self.viewer.layers:
            self.say(f"{layer.name} was closed: its analysis was cancelled.")
        else:
            self.say("Cancelled: nothing was kept (the feature cache is written only when a slide is complete).")

    def _on_progress(self, p):
        import time

        self.progress.setMaximum(max(p.total, 1))
        self.progress.setValue(p.done)
        now = time.monotonic()
        if p.done in (0, p.total) or now - self._last_status > 0.5:  # each new text repaints the dock
            self._last_status = now
            self.status.setText(f"{self.job_layer.name if self.job_layer is not None else ''}: {p}")

    def _on_ready(self, layer, analysis):
        if layer not in self.viewer.layers:
            self.say("The slide layer was closed while it was being analysed; the result was dropped.")
            return
        self.registry.put(slide_of(layer), analysis)
        n = len(analysis.features.features)
        self.say(f"{layer.name}: {n} patches analysed on {analysis.device_info}.")
        self.progress.setValue(self.progress.maximum())
        self.attention.set_gallery(getattr(analysis, "gallery", []))
        self.zero_shot.set_sets(*analysis.ontology.class_sets())  # the model's report ontology
        self.layer_changed()

    def _layer_removed(self, event):
        layer = event.value
        if layer is self.job_layer and self.worker is not None:
            self.worker.quit()  # _on_aborted (or _on_ready) says what happened
        if slide_of(layer) is not None:
            self.registry.drop(slide_of(layer))
            for other in [x for x in self.viewer.layers if (x.metadata or {}).get("slide_layer") == layer.name]:
                self.viewer.layers.remove(other)
        if layer is self.heatmap_layer:
            self.heatmap_layer = None
        self.layer_changed()

    # ------------------------------------------------------------------ maps
    def _show(self, fn, *args, **kwargs):
        """Compute a heatmap in the GUI thread (cheap: numpy over cached results) and show it."""
        if self.analysis is None or not self.analysis.ready:
            self.say("Press Analyse first.", error=True)
            return None
        try:
            heatmap = fn(*args, **kwargs)
        except ValueError as exc:
            self.say(str(exc), error=True)
            return None
        return self.show_heatmap(heatmap)

    def show_text(self, text: str):
        a = self.analysis
        if a is None or not a.ready:
            self.say("Press Analyse first.", error=True)
            return None
        if not text.strip():
            self.say("Type a phrase first, e.g. 'metastatic carcinoma'.", error=True)
            return None
        worker = _compute(a.text_heatmap, text, _ignore_errors=True)  # encodes the text: keep it off the GUI thread
        worker.returned.connect(self.show_heatmap)
        worker.errored.connect(lambda exc: self.say(str(exc), error=True))
        worker.start()
        return worker

    def run_zero_shot(self, classes: dict):
        a = self.analysis
        if a is None or not a.ready:
            self.say("Press Analyse first.", error=True)
            return None
        where = self.zero_shot.where.currentText()
        try:
            polygon = scope_polygon(self.viewer, self.slide_layer, where)
        except ValueError as exc:
            self.say(f"Zero-shot: {exc}.", error=True)
            return None
        if polygon is None:
            worker = _compute(a.zero_shot, classes, _ignore_errors=True)
        else:
            worker = _compute(_region_zero_shot, a, polygon, classes, _ignore_errors=True)
        worker.returned.connect(lambda result: self._zero_shot_done(result, "" if polygon is None else where))
        worker.errored.connect(lambda exc: self.say(f"Zero-shot: {exc}", error=True))
        worker.start()
        return worker

    def _zero_shot_done(self, result, where: str = ""):
        self.last_zero_shot = result
        self.zero_shot.show_result(result, where)
        of = f" the {where}" if where else ""
        self.say(f"Zero-shot{of}: most likely '{result.best}' ({result.probabilities[result.best]:.0%}).")

    def show_class(self, cls: str):
        if self.last_zero_shot is not None and cls in self.last_zero_shot.heatmaps:
            return self.show_heatmap(self.last_zero_shot.heatmaps[cls])
        return None

    def show_heatmap(self, heatmap):
        """Replace the current heatmap layer with ``heatmap`` in the chosen display settings."""
        layer = self.slide_layer
        if layer is None:
            return None
        self.current = heatmap
        shown = heatmap.normalised(self.normalisation.currentText())
        data, kwargs, _ = heatmap_layer_data(
            shown, layer, self.smoothed.isChecked(), self.colormap.currentText(), self.opacity.value() / 100
        )
        scope = self.scope_banner.scope
        if scope is not None and scope.flagged:  # still shown, and labelled: the model does not know this tissue
            kwargs["name"] += " [OUT OF SCOPE]"
        old = self.heatmap_layer
        if old is not None and old in self.viewer.layers and old.metadata.get("slide_layer") == layer.name:
            # update in place: a new layer rebuilds its vispy node and Qt controls (~0.1-0.2 s of GUI stall)
            old.metadata = kwargs["metadata"]
            old.data = data
            for key in ("scale", "translate", "colormap", "contrast_limits", "name", "opacity"):
                setattr(old, key, kwargs[key])
        else:
            if old is not None and old in self.viewer.layers:
                self.viewer.layers.remove(old)
            self.heatmap_layer = self.viewer.add_image(data, **kwargs)
        self.viewer.layers.selection.active = layer
        lo, hi = contrast_limits(shown.values)
        self.colorbar.setPixmap(pixmap_of(colorbar_rgb(self.colormap.currentText(), lo, hi)))
        self.range_label.setText(f"{lo:.4g}  ←  {shown.title}  →  {hi:.4g}")
        for b in self.export_buttons.values():
            b.setEnabled(True)
        return self.heatmap_layer

    def _restyle(self, *_):
        if self.current is not None:
            self.show_heatmap(self.current)

    def _set_opacity(self, value: int):
        if self.heatmap_layer is not None and self.heatmap_layer in self.viewer.layers:
            self.heatmap_layer.opacity = value / 100

    def _on_click(self, viewer, event):
        layer = self.slide_layer
        if self.current is None or layer is None:
            return
        x, y = level0_of_world(layer, event.position)
        shown = self.current.normalised(self.normalisation.currentText())
        hit = shown.value_at((x, y))
        if hit is None:
            self.readout.setText(f"level-0 ({x:.0f}, {y:.0f}): no analysed patch here")
        else:
            i, v = hit
            px, py = shown.xy_level0[i]
            self.readout.setText(
                f"patch at level-0 ({px}, {py}): {v:.4g} ({shown.normalisation}; raw {shown.raw_values[i]:.4g})"
            )
        self.viewer.status = self.readout.text()

    # ------------------------------------------------------------------ export
    def _ask_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(self, "Replace file?", f"{path} exists. Replace it?")
        return answer == QMessageBox.Yes

    def export(self, path: str | Path) -> Path | None:
        """Write the current map (as displayed: normalisation included); asks before replacing a file."""
        from napari_pathalign.io.heatmap_files import write_heatmap

        if self.current is None:
            self.say("Show a heatmap first.", error=True)
            return None
        path = Path(path)
        shown = self.current.normalised(self.normalisation.currentText())
        overwrite = False
        if path.exists():
            if not self.confirm_overwrite(path):
                self.say(f"Not exported: {path} exists and was kept.")
                return None
            overwrite = True
        try:
            out = write_heatmap(shown, path, overwrite=overwrite)
        except (ValueError, OSError) as exc:
            self.say(f"Export failed: {exc}", error=True)
            return None
        show_info(f"Wrote {out}")
        self.say(f"Wrote {out}")
        return out

    def _export_dialog(self, suffix: str):
        name, _ = QFileDialog.getSaveFileName(
            self, "Export heatmap", f"heatmap{suffix}", f"*{suffix}", options=QFileDialog.DontConfirmOverwrite
        )
        if name:
            self.export(name if name.endswith(suffix) else name + suffix)
