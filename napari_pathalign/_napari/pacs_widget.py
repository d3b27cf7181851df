"""Dock widget: find slides on a hospital archive (QIDO-RS) and open one (WADO-RS), lazily like a file.

Thin: the search and the opening run in ``thread_worker``s on ``io.dicomweb``; credentials come from
the environment (PATHALIGN_DICOMWEB_TOKEN, or _USER and _PASSWORD) and are never shown.
"""

from __future__ import annotations

import napari
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_pathalign._napari.status_line import show_status


@thread_worker
def _search(root: str, patient_id: str, accession: str, date: str, modality: str):
    """Studies matching the fields, then their slide series: a list of ``SeriesHit``."""
    from napari_pathalign.io.dicomweb import Credentials, DicomWebConnection

    with DicomWebConnection(root, Credentials.from_env()) as pacs:
        studies = pacs.search_studies(patient_id, accession, date, modality)
        hits = []
        for study in studies:
            for series in pacs.search_series(study.study_uid, modality=modality):
                hits.append((study, series))
        return hits


@thread_worker
def _open(url: str):
    from napari_pathalign.io import open_slide

    return open_slide(url)


class PacsWidget(QWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.hits: list = []
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
        self.results.itemDoubleClicked.connect(lambda _: self.open_selected())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.results)
        layout.addWidget(self.status)
        self.worker = None

    def say(self, text: str, error: bool = False) -> None:
        show_status(self.status, text, error=error, source="PACS")

    def search(self, *_):
        from napari_pathalign.io.dicomweb import DicomWebAddress, check_date

        try:  # the user's typing is checked here, before any request
            root = DicomWebAddress.parse(self.url.text()).root
            date = check_date(self.date.text()) if self.date.text().strip() else ""
        except ValueError as exc:
            self.say(str(exc), error=True)
            return None
        worker = _search(root, self.patient_id.text(), self.accession.text(), date, self.modality.text())
        worker.returned.connect(self._show)
        self.say("Searching ...")
        return self._start(worker)

    def _show(self, hits) -> None:
        self.hits = hits
        self.results.clear()
        for study, series in hits:
            self.results.addItem(
                f"{study.patient_id or '?'} | {study.accession or '-'} | {study.date or '-'} | {series.modality} | "
                f"{series.description or study.description or series.series_uid}"
            )
        if hits:
            self.results.setCurrentRow(0)
        self.say(f"{len(hits)} series found." if hits else "No series match.")

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

    def _start(self, worker):
        worker.errored.connect(lambda exc: self.say(str(exc), error=True))
        worker.finished.connect(lambda: self._busy(False))
        self._busy(True)
        self.worker = worker
        worker.start()
        return worker

    def _busy(self, busy: bool) -> None:
        self.search_button.setEnabled(not busy)
        self.open_button.setEnabled(not busy)
