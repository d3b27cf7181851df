"""Dock "Similar cases": search a slide library by the current slide, a drawn shape or the current
view, or by text; show hits with thumbnails, open one beside the slide with the matched region.

Thin: the library (``index.Library``) and the query vectors (``engine.similar``) do the work in
``thread_worker``s; this file gathers input and turns ``Hit``s into a list and layers.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QIcon, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.slide_geometry import query_polygon
from napari_pathalign._napari.slide_info import slide_of

MODES = ["current slide", "selected shape or current view", "text"]
GAP_UM = 200.0  # space between the current slide and an opened hit


@thread_worker
def _search(registry, library, mode, slide, polygon, text, k, filters):
    from napari_pathalign.engine.features import default_cache_dir
    from napari_pathalign.engine.library_build import model_identity
    from napari_pathalign.engine.similar import locate_region, slide_in_scope, slide_query, text_vector

    yield "Loading the retrieval model ..."
    info = library.info()
    model = registry.model(info.model, "auto")
    encoder = registry.encoder(model.cfg.patch_encoder, None, "auto")
    library.check_model(**model_identity(model, encoder))
    yield "Embedding the query ..."
    side = None
    scope = None
    if mode == "text":
        vector = text_vector(model, text)
    else:
        vector, side = slide_query(slide, model, encoder, default_cache_dir(), polygon)
        scope = slide_in_scope(slide, encoder, default_cache_dir())
    yield "Searching ..."
    hits = library.search(vector, k=k, filters=filters or None)
    if side is not None:
        yield "Finding where each hit matches ..."
        hits = locate_region(model, hits, vector, side)
    return hits, scope


@thread_worker
def _add_slide(registry, library, slide):
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import default_cache_dir
    from napari_pathalign.engine.library_build import model_identity, slide_record

    yield "Loading the retrieval model ..."
    model = registry.model(library.info().model, "auto")
    encoder = registry.encoder(model.cfg.patch_encoder, None, "auto")
    library.check_model(**model_identity(model, encoder))
    yield f"Embedding {slide.path.name} ..."
    record, _ = slide_record(slide.path, model, encoder, GridConfig(), default_cache_dir())
    return library.add([record])[0]


class SearchWidget(SlideDock):
    title = "Similar cases"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer)
        self.library = None
        self.hits: list = []
        self.library_label = QLabel("No library open.")
        self.library_label.setWordWrap(True)
        open_button, new_button = QPushButton("Open library ..."), QPushButton("New library ...")
        self.add_button = QPushButton("Add current slide")
        open_button.clicked.connect(lambda: self._choose_library(create=False))
        new_button.clicked.connect(lambda: self._choose_library(create=True))
        self.add_button.clicked.connect(self.add_current_slide)
        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.text = QLineEdit()
        self.text.setPlaceholderText("text query, e.g. metastatic carcinoma")
        self.k = QSpinBox()
        self.k.setRange(1, 100)
        self.k.setValue(5)
        self.filter_label, self.filter_site, self.filter_report = QLineEdit(), QLineEdit(), QLineEdit()
        self.filter_report.setPlaceholderText("words in the report")
        self.search_button, self.cancel_button = QPushButton("Search"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.educator = QCheckBox("educator mode (hide labels and reports)")
        self.reveal_button = QPushButton("Reveal")
        self.beside = QCheckBox("open a hit beside, in a linked second canvas (Side by side dock)")
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()
        self.vote = QLabel("")
        self.vote.setWordWrap(True)
        self.results = QListWidget()
        self.results.setIconSize(QSize(72, 72))
        self.results.setWordWrap(True)
        self.results.setMinimumHeight(240)
        self.revealed = False
        row = QHBoxLayout()
        for b in (open_button, new_button, self.add_button):
            row.addWidget(b)
        form = QFormLayout()
        form.addRow("search by", self.mode)
        form.addRow("text", self.text)
        form.addRow("hits (k)", self.k)
        form.addRow("label is", self.filter_label)
        form.addRow("site is", self.filter_site)
        form.addRow("report has", self.filter_report)
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addWidget(self.cancel_button)
        edu = QHBoxLayout()
        edu.addWidget(self.educator)
        edu.addWidget(self.reveal_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.library_label)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addLayout(edu)
        layout.addWidget(self.progress)
        layout.insertWidget(1, self.scope_banner)
        layout.addWidget(self.status)
        layout.addWidget(self.vote)
        layout.addWidget(self.beside)
        layout.addWidget(self.results)
        self.search_button.clicked.connect(self.search)
        self.cancel_button.clicked.connect(self.cancel)
        self.educator.toggled.connect(self._educator_changed)
        self.reveal_button.clicked.connect(self.reveal)
        self.results.itemClicked.connect(lambda item: self.open_hit(self.results.row(item)))
        self._educator_changed(False)

    # ------------------------------------------------------------------ library
    def _choose_library(self, create: bool):
        folder = QFileDialog.getExistingDirectory(self, "New library folder (empty)" if create else "Library folder")
        if folder:
            self.create_library(folder) if create else self.open_library(folder)

    def open_library(self, folder):
        from napari_pathalign.index import Library, LibraryError

        try:
            library = Library.open(folder)
        except (LibraryError, OSError) as exc:
            self.say(str(exc), error=True)
            return None
        return self._use(library)

    def create_library(self, folder, model: str = "embedded-r"):
        from napari_pathalign.engine.library_build import model_identity
        from napari_pathalign.index import Library, LibraryError

        try:
            m = self.registry.model(model, "auto")
            library = Library.create(
                folder, **model_identity(m, self.registry.encoder(m.cfg.patch_encoder, None, "auto"))
            )
        except (LibraryError, ValueError, OSError) as exc:
            self.say(str(exc), error=True)
            return None
        return self._use(library)

    def _use(self, library):
        if self.library is not None and self.library is not library:
            self.library.close()
        self.library = library
        info = library.info()
        self.library_label.setText(
            (
                f"<b>{Path(info.path).name}</b>: {info.count} slides, {info.reports_count} reports; {info.model} "
                f"({info.index_type})"
            )
        )
        self.say(library.repaired or "")
        return library

    # ------------------------------------------------------------------ queries
    def _slide_layer(self):
        layer = self.viewer.layers.selection.active
        if slide_of(layer) is not None:
            return layer
        return next((lyr for lyr in reversed(self.viewer.layers) if slide_of(lyr) is not None and lyr.visible), None)

    def search(self, *_):
        if self.library is None:
            self.say("Open or create a library first.", error=True)
            return None
        mode = self.mode.currentText()
        layer = self._slide_layer()
        if mode != "text" and layer is None:
            self.say("Select a slide layer opened by PathAlign (or search by text).", error=True)
            return None
        if mode == "text" and not self.text.text().strip():
            self.say("Type a text to search for.", error=True)
            return None
        polygon = query_polygon(self.viewer, layer) if mode.startswith("selected") else None
        filters = {
            k: w.text().strip()
            for k, w in (
                ("label", self.filter_label),
                ("site", self.filter_site),
                ("report_contains", self.filter_report),
            )
            if w.text().strip()
        }
        self.hits = []
        self._render()  # a failed search must not leave the previous hits looking like its answer
        worker = _search(
            self.registry,
            self.library,
            mode,
            slide_of(layer) if layer else None,
            polygon,
            self.text.text(),
            self.k.value(),
            filters,
            _ignore_errors=True,
        )
        self.query_layer = layer
        return self._start(worker, self._show_hits)

    def add_current_slide(self, *_):
        layer = self._slide_layer()
        if self.library is None or layer is None:
            self.say("Open a library and select a slide layer first.", error=True)
            return None
        return self._start(
            _add_slide(self.registry, self.library, slide_of(layer), _ignore_errors=True),
            lambda row: (self._use(self.library), self.say(f"Added {layer.name} (row {row}).")),
        )

    def _start(self, worker, on_done):
        worker.yielded.connect(lambda msg: self.say(str(msg)))
        worker.returned.connect(on_done)
        worker.errored.connect(lambda exc: self.say(str(exc), error=True))
        worker.aborted.connect(lambda: self.say("Cancelled."))
        worker.finished.connect(lambda: self._busy(False))
        self._busy(True)
        return self.start_worker(worker)

    def _busy(self, busy: bool):
        self.search_button.setEnabled(not busy)
        self.add_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)

    cancel = SlideDock.stop  # the Cancel button

    # ------------------------------------------------------------------ results
    def _show_hits(self, result):
        hits, scope = result
        self.hits = hits
        self.revealed = False
        self._render()
        self.show_scope(scope)
        if scope is not None and scope.flagged and hits:
            self.say(
                f"{len(hits)} nearest slides, NOT similar cases: the query slide is outside what the model was "
                "trained on.",
                error=True,
            )
            return
        self.say(f"{len(hits)} hits." if hits else "No hits: the library is empty or no slide matches the filters.")

    def _educator_changed(self, on: bool):
        self.reveal_button.setVisible(on)
        self.revealed = not on
        self._render()

    def reveal(self, *_):
        self.revealed = True
        self._render()

    def _render(self):
        from napari_pathalign.index import Library

        self.results.clear()
        hidden = self.educator.isChecked() and not self.revealed
        for h in self.hits:
            where = f"\nmatches at x,y,w,h = {h.region_xywh}" if h.region_xywh else ""
            about = (
                "label and report hidden (educator mode)"
                if hidden
                else f"{h.label or 'no label'} · {(h.report or 'no report').replace(chr(10), ' ')[:110]}"
            )
            item = QListWidgetItem(f"{h.rank}. {Path(h.path).name}  score {h.score:.3f}\n{about}{where}")
            if h.thumbnail_png:
                pix = QPixmap()
                pix.loadFromData(h.thumbnail_png)
                item.setIcon(QIcon(pix))
            item.setData(Qt.UserRole, h.id)
            self.results.addItem(item)
        label, agreement, _ = Library.majority_vote(self.hits) if self.hits else (None, 0.0, {})
        if hidden or label is None:
            self.vote.setText("Suggested diagnosis: hidden until Reveal." if hidden and label else "")
        else:
            self.vote.setText(
                f"Suggested (majority of the top {len(self.hits)}): <b>{label}</b>, agreement {agreement:.0%}"
            )

    def open_hit(self, row: int):
        """Open a hit's slide to the right of the current one (both in µm), its matched region outlined;
        with "open beside" ticked, in the Side by side dock's linked canvas instead."""
        from napari_pathalign._napari.layers import slide_layer_data
        from napari_pathalign.io import SlideError, open_slide

        hit = self.hits[row]
        if self.beside.isChecked():
            from napari_pathalign._napari.side_by_side import side_by_side_dock

            dock = side_by_side_dock(self.viewer)
            return dock.open_hit(hit) if dock is not None else None
        try:
            slide = open_slide(hit.path)
        except (SlideError, OSError) as exc:
            self.say(f"Cannot open {hit.path}: {exc}", error=True)
            return None
        data, kwargs, _ = slide_layer_data(slide, name=f"hit {hit.rank}: {Path(hit.path).name}")[0]
        current = getattr(self, "query_layer", None) or self._slide_layer()
        right = current.extent.world[1][-1] if current is not None else 0.0
        kwargs["translate"] = (0.0, right + GAP_UM)
        layer = self.viewer.add_image(data, **kwargs)
        if hit.region_xywh:
            data, kwargs, _ = matched_region_data(hit, layer)
            self.viewer.add_shapes(data, **kwargs)
        self.viewer.layers.selection.active = layer
        return layer


def matched_region_data(hit, slide_layer) -> tuple:
    """(data, kwargs, 'shapes'): a hit's matched region (``hit.region_xywh``, level 0) outlined over its slide."""
    x, y, w, h = hit.region_xywh
    corners = np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], float) - 0.5  # level-0 (row, col)
    world = np.array([slide_layer.data_to_world(c) for c in corners])
    mpp = slide_layer.metadata.get("mpp") or 1
    kwargs = {
        "shape_type": "rectangle",
        "edge_color": "cyan",
        "face_color": "transparent",
        "edge_width": max(w, h) * mpp / 40,
        "units": tuple(slide_layer.units),
        "name": f"hit {hit.rank}: matched region",
    }
    return [world], kwargs, "shapes"
