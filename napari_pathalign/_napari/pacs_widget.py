"""Dock widget: find slides on a hospital archive (QIDO-RS), see a thumbnail of each, open one (WADO-RS) lazily
like a file, and send the slide's results back to its study (STOW-RS) or save them as DICOM files.

Thin: the search, the thumbnails, the opening and the export run in ``thread_worker``s on ``io.dicomweb``,
``io.dicomweb_thumbnail`` and the ``io.dicom_*`` builders; credentials come from the environment
(PATHALIGN_DICOMWEB_TOKEN, or _USER and _PASSWORD) and are never shown. Thumbnails come from a series'
THUMBNAIL or coarsest VOLUME image, never its label or overview, which can show the patient's name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import napari
import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import QSize
from qtpy.QtGui import QColor, QIcon, QImage, QPixmap
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from napari_pathalign._napari.dock import SlideDock
from napari_pathalign._napari.heatmap_layers import shown_heatmap
from napari_pathalign._napari.slide_info import slide_layer_of, slide_of
from napari_pathalign.io.dicom_bundle import FILES, result_kinds

ICON_SIZE = 64  # thumbnail side in the series list (pixels)
THUMBNAIL_SIZE = 128  # fetched at twice the icon's size: sharp on a high-DPI screen
DEID_KEY_ENV = "PATHALIGN_DEID_KEY"  # the site's de-identification key; read only when "de-identify" is ticked


@thread_worker
def _search(root: str, patient_id: str, accession: str, date: str, modality: str):
    """Studies matching the fields, then their slide series: a list of ``SeriesHit``."""
    from napari_pathalign.io.dicomweb import Credentials, DicomWebConnection

    with DicomWebConnection(root, Credentials.for_server(root)) as pacs:
        studies = pacs.search_studies(patient_id, accession, date, modality)
        hits = []
        for study in studies:
            for series in pacs.search_series(study.study_uid, modality=modality):
                hits.append((study, series))
        return hits


@thread_worker
def _thumbnails(root: str, series: list[tuple[str, str]]):
    """Yields (root, series UID, ``SeriesThumbnail`` or None, why not, whether that lasts) for each (study UID,
    series UID): a series with no picture (an SR, a CT) lasts; a connection or server fault does not."""
    from napari_pathalign.io.dicomweb import Credentials, DicomWebConnection
    from napari_pathalign.io.dicomweb_thumbnail import NoThumbnailError, series_thumbnail

    with DicomWebConnection(root, Credentials.for_server(root)) as pacs:
        for study_uid, series_uid in series:
            try:
                yield root, series_uid, series_thumbnail(pacs, study_uid, series_uid, THUMBNAIL_SIZE), "", True
            except Exception as exc:  # a thumbnail is decoration: its failure leaves a placeholder, never the list
                yield root, series_uid, None, str(exc), isinstance(exc, NoThumbnailError)


@thread_worker
def _open(url: str):
    from napari_pathalign.io import open_slide

    return open_slide(url)


@dataclass
class Exported:
    """What "Save as DICOM" or "Send to archive" did."""

    what: str  # 'report SR, heatmap Parametric Map (...), bulk annotations (2 regions)'
    where: str  # 'saved in <folder>' or 'sent to <root>, into the slide's study <uid>'
    sop_instance_uids: list[str]  # of the instances written or stored, in that order
    study_uid: str  # the study they belong to (a pseudonymous one when de-identified)


@thread_worker
def _export(url: str, report: dict | None, heatmap, regions: list, key: str | None, folder: Path | None):
    """The results on the slide's level-0 instance, written into ``folder`` or, when None, stored into the
    slide's study (STOW-RS); returns ``Exported``."""
    from napari_pathalign.io.dicom_bundle import iter_results
    from napari_pathalign.io.dicom_results import write_dicom
    from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection

    address = DicomWebAddress.parse(url)
    with DicomWebConnection(address.root, Credentials.for_server(address.root)) as pacs:
        source = pacs.slide_source(address.study_uid, address.series_uid)
        built = list(iter_results(source, report, heatmap, regions, key))
        what = ", ".join(r.what for r in built)
        uids = [str(r.dataset.SOPInstanceUID) for r in built]
        study = str(built[0].dataset.StudyInstanceUID)
        if folder is not None:
            for r in built:
                write_dicom(r.dataset, folder / FILES[r.kind], overwrite=False)
            return Exported(what, f"saved in {folder}" + (" (de-identified)" if key else ""), uids, study)
        # a de-identified result is its own pseudonymous study: the slide's study does not hold it
        pacs.store([r.dataset for r in built], None if key else address.study_uid)
        where = f"de-identified, as its own study {study}" if key else f"into the slide's study {study}"
        return Exported(what, f"sent to {address.root}, {where}", uids, study)


def _icon(rgb: np.ndarray) -> QIcon:
    """(H, W, 3) uint8 -> QIcon (the pixels copied: Qt must not keep numpy's buffer)."""
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QIcon(QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()))


def _placeholder() -> QIcon:
    pixmap = QPixmap(ICON_SIZE, ICON_SIZE)
    pixmap.fill(QColor(70, 70, 70))
    return QIcon(pixmap)


class PacsWidget(SlideDock):
    title = "PACS"

    def __init__(self, napari_viewer: napari.Viewer, report_store=None):
        super().__init__(napari_viewer)
        self.hits: list = []
        self.root = ""  # the DICOMweb root of the last search
        self.thumbnails: dict = {}  # (root, series UID) -> SeriesThumbnail, fetched once per series
        self.no_thumbnail: dict = {}  # (root, series UID) -> why it has none (an SR, a CT...): not asked again
        self.thumbnail_worker = None
        self.report_store = report_store  # the Report dock's store (None: the user's default folder)
        self.last_export = None  # the last Exported: what was saved or sent, and its UIDs
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.patient_id, self.accession, self.date = QLineEdit(), QLineEdit(), QLineEdit()
        self.date.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.modality = QLineEdit("SM")
        form = QFormLayout()
        for label, field in (
            ("DICOMweb URL", self.url),
            ("Patient ID", self.patient_id),
            ("Accession", self.accession),
            ("Study date", self.date),
            ("Modality", self.modality),
        ):
            form.addRow(label, field)
        self.search_button, self.open_button = QPushButton("Search"), QPushButton("Open")
        self.search_button.clicked.connect(self.search)
        self.open_button.clicked.connect(self.open_selected)
        self.results = QListWidget()
        self.results.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.results.itemDoubleClicked.connect(lambda _: self.open_selected())
        self._placeholder = _placeholder()
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.results)
        layout.addWidget(self._results_group())
        layout.addWidget(self.status)
        self.connect_viewer(self.viewer.layers.events.inserted, self.refresh_results)
        self.connect_viewer(self.viewer.layers.events.removed, self.refresh_results)
        self.follow_slide_selection()

    def _results_group(self) -> QGroupBox:
        group = QGroupBox("Results to the archive")
        self.export_slide = QLabel("")
        self.export_slide.setWordWrap(True)
        self.export_report = QCheckBox("report (the Report dock's last text)")
        self.export_heatmap = QCheckBox("heatmap (the top visible heatmap layer)")
        self.export_regions = QCheckBox("regions of")
        self.regions_layer = QComboBox()
        self.deidentify = QCheckBox(f"de-identify (key from {DEID_KEY_ENV})")
        self.save_button, self.send_button = QPushButton("Save as DICOM…"), QPushButton("Send to archive")
        self.save_button.clicked.connect(self._save_dialog)
        self.send_button.clicked.connect(self.send)
        regions = QHBoxLayout()
        regions.addWidget(self.export_regions)
        regions.addWidget(self.regions_layer, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.send_button)
        box = QVBoxLayout(group)
        for widget in (self.export_slide, self.export_report, self.export_heatmap):
            box.addWidget(widget)
        box.addLayout(regions)
        box.addWidget(self.deidentify)
        box.addLayout(buttons)
        return group

    # ------------------------------------------------------------------ search, thumbnails, open
    def search(self, *_):
        from napari_pathalign.io.dicomweb import DicomWebAddress, check_date

        try:  # the user's typing is checked here, before any request
            root = DicomWebAddress.parse(self.url.text()).root
            date = check_date(self.date.text()) if self.date.text().strip() else ""
        except ValueError as exc:
            self.say(str(exc), error=True)
            return None
        self.root = root
        worker = _search(root, self.patient_id.text(), self.accession.text(), date, self.modality.text())
        worker.returned.connect(self._show)
        self.say("Searching ...")
        return self._start(worker)

    def _show(self, hits) -> None:
        self.hits = hits
        self.results.clear()
        missing = []
        for study, series in hits:
            item = QListWidgetItem(
                f"{study.patient_id or '?'} | {study.accession or '-'} | {study.date or '-'} | {series.modality} | "
                f"{series.description or study.description or series.series_uid}"
            )
            cached = self.thumbnails.get((self.root, series.series_uid))
            item.setIcon(_icon(cached.rgb) if cached is not None else self._placeholder)
            why = self.no_thumbnail.get((self.root, series.series_uid))
            if why is not None:
                item.setToolTip(f"no thumbnail: {why}")
            self.results.addItem(item)
            if cached is None and why is None:
                missing.append((study.study_uid, series.series_uid))
        if hits:
            self.results.setCurrentRow(0)
        self.say(f"{len(hits)} series found." if hits else "No series match.")
        self._fetch_thumbnails(missing)

    def _fetch_thumbnails(self, series: list[tuple[str, str]]) -> None:
        """Thumbnails in their own worker: the list is usable (and Open works) while they arrive."""
        if self.thumbnail_worker is not None:
            self.thumbnail_worker.quit()
            self.thumbnail_worker = None
        if not series:
            return
        worker = _thumbnails(self.root, series)
        worker.yielded.connect(self._thumbnail_arrived)  # a bound method: Qt drops it when the dock goes
        self.thumbnail_worker = worker
        worker.start()

    def _thumbnail_arrived(self, arrived: tuple) -> None:
        root, series_uid, thumbnail, why, lasting = arrived
        if thumbnail is not None:
            self.thumbnails[(root, series_uid)] = thumbnail
        elif lasting:
            self.no_thumbnail[(root, series_uid)] = why
        if root != self.root:  # a newer search on another server
            return
        for row, (_, series) in enumerate(self.hits):
            if series.series_uid == series_uid and row < self.results.count():
                item = self.results.item(row)
                if thumbnail is not None:
                    item.setIcon(_icon(thumbnail.rgb))
                else:
                    item.setToolTip(f"no thumbnail: {why}")

    def thumbnails_done(self) -> bool:
        """Whether no thumbnail is still being fetched."""
        return self.thumbnail_worker is None or not self.thumbnail_worker.is_running

    def open_selected(self, *_):
        row = self.results.currentRow()
        if not 0 <= row < len(self.hits):
            self.say("Search, then select a series to open.", error=True)
            return None
        worker = _open(self.hits[row][1].url)
        worker.returned.connect(self._add)
        self.say("Opening ...")
        return self._start(worker)

    def _add(self, slide) -> None:
        from napari_pathalign._napari.layers import slide_layer_data

        data, kwargs, _ = slide_layer_data(slide)[0]
        self.viewer.add_image(data, **kwargs)
        self.say(f"Opened {slide.path.name} from {slide.properties.get('dicomweb.root', '')}.")

    # ------------------------------------------------------------------ results to the archive
    def export_layer(self):
        """The slide layer the results belong to: the active slide, else the only slide in the viewer."""
        return slide_layer_of(self.viewer)

    def layer_changed(self, *_) -> None:
        self.refresh_results()

    def refresh_results(self, *_) -> None:
        """Say which slide the results would go with, and list the Shapes layers its regions may come from."""
        layer = self.export_layer()
        slide = slide_of(layer)
        if slide is None:
            self.export_slide.setText("Open a slide from the archive and select it.")
        elif not str(slide.url or "").startswith("dicomweb+"):
            self.export_slide.setText(f"{layer.name} is not from a DICOMweb archive: its results cannot go to one.")
        else:
            self.export_slide.setText(f"For {layer.name}, from {slide.properties.get('dicomweb.root', '')}.")
        shapes = [x.name for x in self.viewer.layers if isinstance(x, napari.layers.Shapes)]
        active = self.viewer.layers.selection.active
        current = active.name if isinstance(active, napari.layers.Shapes) else self.regions_layer.currentText()
        self.regions_layer.blockSignals(True)
        self.regions_layer.clear()
        self.regions_layer.addItems(shapes)
        if current in shapes:
            self.regions_layer.setCurrentText(current)
        self.regions_layer.blockSignals(False)

    def _gather(self) -> tuple | None:
        """(slide URL, report, heatmap, regions, key) from the viewer, or None after saying what is missing."""
        layer = self.export_layer()
        slide = slide_of(layer)
        if slide is None or not str(slide.url or "").startswith("dicomweb+"):
            self.say(
                "Select a slide opened from the archive (Search, Open): DICOM results go into a slide's study "
                "on its server."
                if slide is None
                else f"{layer.name} was not opened from a DICOMweb archive; results go back only to the archive "
                "a slide came from (for files: the Report and Heatmap docks' exports).",
                error=True,
            )
            return None
        if not (self.export_report.isChecked() or self.export_heatmap.isChecked() or self.export_regions.isChecked()):
            self.say("Tick what to export: report, heatmap and/or regions.", error=True)
            return None
        try:
            report = self._report(slide) if self.export_report.isChecked() else None
            heatmap = self._heatmap(layer) if self.export_heatmap.isChecked() else None
            regions = self._regions(layer) if self.export_regions.isChecked() else []
            key = self._key() if self.deidentify.isChecked() else None
        except ValueError as exc:
            self.say(str(exc), error=True)
            return None
        return slide.url, report, heatmap, regions, key

    def _report(self, slide) -> dict:
        """The slide's last report text in the Report dock's store, with the model draft's sentences and
        provenance when the text is still that draft's."""
        from napari_pathalign._napari.report_widget import slide_key
        from napari_pathalign.reporting.report_store import ReportStore

        store = self.report_store if self.report_store is not None else ReportStore()
        report = store.load(slide_key(slide)[0])
        text = report.latest_text if report is not None else None
        if not text or not text.strip():
            raise ValueError("No report for this slide yet: draft or write it in the Report dock, then export.")
        draft = report.model_draft("last")
        if draft is not None and draft.draft and draft.text == text:
            return {
                "text": text,
                "sentences": draft.draft.get("sentences", []),
                "provenance": draft.draft.get("provenance", {}),
            }
        provenance = {"author": "user", "edited_from_model_draft": draft is not None}
        if draft is not None and draft.draft:
            provenance["model_draft"] = draft.draft.get("provenance", {})
        return {"text": text, "sentences": [], "provenance": provenance}

    def _heatmap(self, slide_layer):
        heatmap = shown_heatmap(self.viewer, slide_layer)
        if heatmap is not None:
            return heatmap
        raise ValueError(f"No visible heatmap layer over {slide_layer.name}: compute one (Heatmaps dock) or show it.")

    def _regions(self, slide_layer) -> list:
        from napari_pathalign._napari.annotation_layers import annotations_of_layer

        name = self.regions_layer.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("No Shapes layer to take regions from: draw them in one, then choose it here.")
        regions = annotations_of_layer(self.viewer.layers[name], slide_layer)
        if not regions:
            raise ValueError(f"The Shapes layer {name!r} holds no shapes: draw the regions to export first.")
        return regions

    def _key(self) -> str:
        from napari_pathalign.io.deidentify import pseudonym

        key = os.environ.get(DEID_KEY_ENV, "")
        if not key:
            raise ValueError(
                f"De-identify: {DEID_KEY_ENV} is not set. Start napari with the site's de-identification key "
                "(a secret of at least 16 characters) in it, or untick de-identify."
            )
        pseudonym("check", key)  # a short key is refused now, in words
        return key

    def _save_dialog(self, *_):
        folder = QFileDialog.getExistingDirectory(self, "Save the results as DICOM into folder")
        return self.save_as(folder) if folder else None

    def save_as(self, folder):
        """Write the ticked results as DICOM files into ``folder``; never over an existing file."""
        gathered = self._gather()
        if gathered is None:
            return None
        folder = Path(folder)
        if not folder.is_dir():
            self.say(f"{folder} is not a folder; choose an existing folder.", error=True)
            return None
        clash = [folder / FILES[k] for k in result_kinds(*gathered[1:4]) if (folder / FILES[k]).exists()]
        if clash:  # checked before anything is built; write_dicom refuses again, atomically
            self.say(f"{', '.join(p.name for p in clash)} already in {folder}; choose another folder.", error=True)
            return None
        return self._run_export(_export(*gathered, folder), "Saving")

    def send(self, *_):
        """Store the ticked results into the slide's study on its server (STOW-RS)."""
        gathered = self._gather()
        if gathered is None:
            return None
        return self._run_export(_export(*gathered, None), "Sending")

    def _run_export(self, worker, doing: str):
        worker.returned.connect(self._exported)
        self.say(f"{doing} ...")
        return self._start(worker)

    def _exported(self, done: Exported) -> None:
        self.last_export = done
        self.say(f"{done.what[:1].upper()}{done.what[1:]}: {done.where}.")

    # ------------------------------------------------------------------ workers
    def _start(self, worker):
        worker.errored.connect(self._failed)  # bound methods, not lambdas: Qt drops them when the dock goes
        worker.finished.connect(self._idle)
        self._busy(True)
        return self.start_worker(worker)

    def _failed(self, exc: BaseException) -> None:
        self.say(str(exc), error=True)

    def _idle(self) -> None:
        self._busy(False)

    def _busy(self, busy: bool) -> None:
        for button in (self.search_button, self.open_button, self.save_button, self.send_button):
            button.setEnabled(not busy)

    def closeEvent(self, event):  # noqa: N802 (Qt)
        if self.thumbnail_worker is not None:
            self.thumbnail_worker.quit()
        super().closeEvent(event)
