"""Dock "Report": draft a report for the selected slide (streamed, Stop), edit it, see each sentence's
support and evidence, accept / save versions / export. Edits autosave within 2 s; reopening the
slide restores the last text and says so; nothing is overwritten without asking.

Thin: ``SlideAnalysis.iter_draft`` in a worker, ``ReportStore`` for versions, writers in ``io``.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import napari
from napari.qt.threading import thread_worker
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from napari_pathalign._napari.dock import SlideDock, dock_links
from napari_pathalign._napari.evidence_view import EvidenceView
from napari_pathalign._napari.report_check import ReportCheckMixin, support_colour
from napari_pathalign._napari.slide_geometry import SCOPES
from napari_pathalign._napari.slide_info import slide_of
from napari_pathalign.reporting.drafting import iter_draft, statements_at

AUTOSAVE_MS = 1500  # an edit is on disk within 2 s
DECODING = {"greedy (streamed)": {}, "beam search (3)": {"num_beams": 3}, "top-p 0.9 (sampled)": {"top_p": 0.9}}


@thread_worker
def _draft(registry, slide, config, prompt):
    """Prepare the slide's analysis when needed, then stream the draft."""
    from napari_pathalign.core.generators import mapped

    analysis = yield from mapped(registry.iter_ready(slide), lambda p: ("progress", str(p)))
    return (yield from mapped(iter_draft(analysis, config, prompt), lambda text: ("text", text)))


def slide_key(slide) -> tuple[str, str]:
    from napari_pathalign.engine.features import slide_fingerprint

    return slide_fingerprint(slide.path), str(slide.path)


class ReportWidget(ReportCheckMixin, SlideDock):
    title = "Report"

    def __init__(self, napari_viewer: napari.Viewer, store=None):
        from napari_pathalign.reporting.report_store import ReportStore

        super().__init__(napari_viewer)
        self.store = store if store is not None else ReportStore()
        self.draft = None  # the model's last Draft (its text is never lost under edits)
        self.shown = []  # the Statements listed under the editor (a draft's or a check's)
        self.layer = None  # the slide layer this report belongs to
        self.dirty = False  # edited since the last saved version
        self.confirm = self._ask  # tests replace it
        self._watched = None  # the top-level window whose closing asks about unsaved edits
        self.slide_label = QLabel("Select a slide layer.")
        self.slide_label.setWordWrap(True)
        self.decoding = QComboBox()
        self.decoding.addItems(list(DECODING))
        self.draft_button, self.stop_button = QPushButton("Draft"), QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.check_button = QPushButton("Check")
        self.check_button.setToolTip(
            "Check the text in the editor, typed, pasted or drafted, against the slide: each sentence's claims "
            "in the words of the model's report ontology"
        )
        self.checked_where = "the slide"  # what the last check was against (the status line says so)
        self.check_result = None  # the last ReportCheck shown
        self.check_scope = QComboBox()
        self.check_scope.addItems(SCOPES)
        self.check_scope.setToolTip(
            "Check against the whole slide, or only here: the current view, or the selected shape (drawn or an "
            "imported QuPath region)"
        )
        self.case_button = QPushButton("Case report")
        self.case_button.setToolTip(
            "One report for the case: the reports of every open slide as lettered parts A., B., ... (layer order)"
        )
        self.editor = QPlainTextEdit()
        self.editor.setPlaceholderText("Press Draft, or type the report.")
        self.editor.setMinimumHeight(140)
        self.sentences = QListWidget()
        self.sentences.setWordWrap(True)
        self.sentences.setMinimumHeight(110)
        self.evidence = EvidenceView(napari_viewer)
        self.accept_button, self.save_button = QPushButton("Accept"), QPushButton("Save version")
        self.export_box = QComboBox()
        self.export_box.addItems(["Markdown (.md)", "JSON (.json)", "PDF (.pdf)"])
        self.export_button = QPushButton("Export ...")
        top = QHBoxLayout()
        for w in (self.decoding, self.draft_button, self.stop_button, self.case_button):
            top.addWidget(w)
        checking = QHBoxLayout()
        checking.addWidget(self.check_button)
        checking.addWidget(QLabel("against"))
        checking.addWidget(self.check_scope, 1)
        bottom = QHBoxLayout()
        for w in (self.accept_button, self.save_button, self.export_box, self.export_button):
            bottom.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addWidget(self.slide_label)
        layout.addWidget(self.scope_banner)
        layout.addLayout(top)
        layout.addWidget(self.editor, 3)
        layout.addLayout(checking)
        layout.addWidget(
            QLabel(
                (
                    "Sentences (support: the chance the slide bears out each one's weakest claim; ⚠ = check it; "
                    "hover for how):"
                )
            )
        )
        layout.addWidget(self.sentences, 2)
        self.unsupported = QListWidget()  # the claims a check found the slide does not bear out; click: evidence
        self.unsupported.setWordWrap(True)
        self.unsupported.setMaximumHeight(90)
        self.unsupported.hide()
        layout.addWidget(self.unsupported)
        layout.addWidget(self.evidence)
        layout.addLayout(bottom)
        layout.addWidget(self.status)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.editor.textChanged.connect(self._edited)
        self.draft_button.clicked.connect(self.start_draft)
        self.check_button.clicked.connect(self.check_text)
        self.unsupported.itemClicked.connect(lambda item: self.show_evidence(item.data(Qt.UserRole)))
        self.stop_button.clicked.connect(self.stop)
        self.case_button.clicked.connect(lambda: self.compose_case())
        self.accept_button.clicked.connect(lambda: self.save_version("accepted"))
        self.save_button.clicked.connect(lambda: self.save_version("edit"))
        self.export_button.clicked.connect(self._export_dialog)
        self.sentences.itemClicked.connect(lambda item: self.show_evidence(self.sentences.row(item)))
        self.add_mouse_callback(self._on_click)
        links = dock_links(self.registry)  # the Chat dock sends answers here
        links.text_for_report.connect(self.editor.appendPlainText)
        links.report_docks += 1
        self._links = links
        self.here = QLabel("")  # evidence the other way: what the draft says about the clicked place
        self.here.setWordWrap(True)
        layout.insertWidget(layout.indexOf(self.evidence) + 1, self.here)
        self._streaming = False
        self.follow_slide_selection()

    # ------------------------------------------------------------------ slide and store
    def _ask(self, question: str) -> bool:
        return QMessageBox.question(self, "Report", question) == QMessageBox.Yes

    def layer_changed(self, *_):
        layer = self.viewer.layers.selection.active
        if slide_of(layer) is None or layer is self.layer or self._streaming:
            return
        if self.dirty and self.layer is not None:
            self.autosave()  # the other slide's edits are kept before switching
        self.layer = layer
        self.draft = None
        self.show_sentences([])
        self.show_scope(None)
        self.slide_label.setText(f"<b>{layer.name}</b>")
        self.restore()

    def restore(self):
        """The slide's last text (autosave or version) into the editor, saying what was restored."""
        from napari_pathalign.reporting.report_store import ReportStoreError

        fp, _ = slide_key(slide_of(self.layer))
        try:
            report = self.store.load(fp)
        except ReportStoreError as exc:
            self.say(str(exc), error=True)
            report = None
        text = self.store.latest_text(fp) if report is not None else None
        self._set_text(text or "")
        self.dirty = False
        message = (
            getattr(report, "restored_message", "")
            if report is not None
            else (getattr(self.store, "last_message", "") or "")
        )
        if report is None and not message:
            older = [f for f in self.store.find_by_path(slide_of(self.layer).path) if f != fp]
            if older:
                message = (
                    "This slide's file has changed since its report was written (the report is kept under fingerprint "
                    f"{older[0]}, not shown for the new content)."
                )
        self.say(message or "No saved report for this slide yet.")

    def _set_text(self, text: str):
        self.editor.blockSignals(True)
        self.editor.setPlainText(text)
        self.editor.blockSignals(False)

    def _edited(self):
        if self._streaming:
            return
        self.dirty = True
        self.autosave_timer.start()

    def autosave(self):
        from napari_pathalign.reporting.report_store import ReportStoreError

        if self.layer is None or not self.dirty:
            return
        fp, path = slide_key(slide_of(self.layer))
        try:
            self.store.autosave(fp, path, self.editor.toPlainText())
        except ReportStoreError as exc:
            self.say(f"Could not autosave ({exc}); the text stays in the editor.", error=True)

    def save_version(self, kind: str = "edit"):
        from napari_pathalign.reporting.report_store import ReportStoreError

        if self.layer is None:
            self.say("Select a slide layer first.", error=True)
            return False
        fp, path = slide_key(slide_of(self.layer))
        try:
            self.store.add_version(fp, path, kind, self.editor.toPlainText(), "user")
        except ReportStoreError as exc:
            self.say(f"Not saved: {exc}. The text stays in the editor.", error=True)
            return False
        self.dirty = False
        self.say("Accepted and saved." if kind == "accepted" else "Version saved.")
        return True

    def has_unsaved_changes(self) -> bool:
        return self.dirty

    def compose_case(self) -> str | None:
        """The case report of every open slide that has a report (this editor's text for this slide),
        as lettered parts in layer order, put in the editor (unsaved: Save version keeps it)."""
        import re

        from napari_pathalign.reporting.drafting import case_report
        from napari_pathalign.reporting.report_store import ReportStoreError

        parts = []
        for layer in self.viewer.layers:
            slide = slide_of(layer)
            if slide is None:
                continue
            try:
                text = (
                    self.editor.toPlainText()
                    if layer is self.layer
                    else (self.store.latest_text(slide_key(slide)[0]) or "")
                )
            except ReportStoreError as exc:
                self.say(f"{layer.name}: {exc}", error=True)
                return None
            text = re.sub(r"^\s*final diagnosis:\s*", "", text, flags=re.IGNORECASE).strip()
            if text:
                parts.append((layer.name, text))
        if len(parts) < 2:
            self.say(
                (
                    "A case report needs the reports of at least two open slides: draft (or write) each slide's "
                    "report first."
                ),
                error=True,
            )
            return None
        if len(parts) > 26:
            self.say(
                (
                    f"A case report has parts A. to Z.; {len(parts)} open slides have reports. Close the ones that "
                    "are not of this case."
                ),
                error=True,
            )
            return None
        if self.dirty:
            self.autosave()  # this slide's own text stays in the store
        if self.editor.toPlainText().strip() and not self.confirm(
            "Replace the text in the editor with the case report? (this slide's text stays in the store)"
        ):
            return None
        text = case_report([(chr(65 + k), t) for k, (_, t) in enumerate(parts)])
        self.editor.setPlainText(text)  # an edit: autosaved, and Save version keeps it with this slide
        self.sentences.clear()
        self.say(
            "Case report: "
            + "; ".join(f"{chr(65 + k)}. {name}" for k, (name, _) in enumerate(parts))
            + ". Save a version to keep it."
        )
        return text

    def before_close(self) -> None:
        """Unsaved edits: ask whether to save them as a version; either way they stay on disk (autosave)."""
        if not self.dirty:
            return
        if self.confirm("The report has unsaved edits (they are autosaved). Save them as a version before closing?"):
            self.save_version("edit")
        else:
            self.autosave()

    def showEvent(self, event):  # noqa: N802 (Qt)
        # A dock's contents get no close event when napari's window closes: watch the window itself.
        top, watched = self.window(), self._watched() if self._watched is not None else None
        if top is not self and top is not watched:
            if watched is not None:
                watched.removeEventFilter(self)
            top.installEventFilter(self)
            self._watched = weakref.ref(top)  # weak: the dock must not keep napari's window alive
        super().showEvent(event)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt)
        if self._watched is not None and obj is self._watched() and event.type() == QEvent.Close:
            self.before_close()
        return False

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self.before_close()
        if self._links is not None:
            self._links.text_for_report.disconnect(self.editor.appendPlainText)
            self._links.report_docks -= 1
            self._links = None
        super().closeEvent(event)

    # ------------------------------------------------------------------ drafting
    def start_draft(self, *_):
        from napari_pathalign.models.decoder import GenerationConfig

        layer = self.layer
        if layer is None:
            self.say("Select a slide layer opened by PathAlign first.", error=True)
            return None
        if (
            self.editor.toPlainText().strip()
            and self.dirty
            and not self.confirm(
                "Drafting replaces the text in the editor (your edits stay in the store as an autosave). Draft anyway?"
            )
        ):
            return None
        if self.dirty:
            self.autosave()
        slide = slide_of(layer)
        config = GenerationConfig(**DECODING[self.decoding.currentText()])
        worker = _draft(self.registry, slide, config, "Final diagnosis:", _ignore_errors=True)
        worker.yielded.connect(self._on_yield)
        worker.returned.connect(lambda d, layer=layer: self._on_draft(layer, d))
        worker.errored.connect(lambda exc: self.say(f"Draft failed: {exc}", error=True))
        worker.aborted.connect(
            lambda: self.say("Stopped: the partial draft is in the editor and not saved as a version.")
        )
        worker.finished.connect(self._finished)
        self._streaming = True
        self.draft_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.editor.setReadOnly(True)
        return self.start_worker(worker)

    def _on_yield(self, item):
        kind, value = item
        if kind == "text":
            self._set_text(value)
        else:
            self.status.setText(value)

    def _finished(self):
        self._streaming = False
        self.editor.setReadOnly(False)
        self.draft_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _on_draft(self, layer, draft):
        from napari_pathalign.reporting.report_store import ReportStoreError

        self.draft = draft
        if layer is not self.layer:
            return
        self._set_text(draft.shown_text)  # an out-of-scope draft begins by saying so
        self.show_sentences(draft.sentences)
        self.show_scope(draft.in_scope)
        fp, path = slide_key(slide_of(layer))
        try:
            self.store.add_version(fp, path, "draft", draft.shown_text, "model", draft=draft.to_dict())
            saved = "saved as the model's draft"
        except ReportStoreError as exc:
            saved = f"NOT saved ({exc})"
        flagged = sum(s.flagged for s in draft.sentences)
        scope = draft.in_scope  # the in-scope score decides where the model has one; the older score only without
        warn = bool(scope.flagged) if scope is not None else bool(getattr(draft.in_distribution, "warn", False))
        self.say(
            f"Draft ready ({len(draft.sentences)} sentences, {flagged} flagged; {saved}). {draft.note}".strip(),
            error=warn,
        )
        self.dirty = False

    def show_sentences(self, sentences: list, checked_only: bool = False) -> None:
        """List statements with their support (a check's sentences without a claim show none)."""
        self.shown = list(sentences)
        self.sentences.clear()
        for s in self.shown:
            if checked_only and not s.claims:
                item = QListWidgetItem(f"[  -  ] {s.text}")
                item.setToolTip("no claim in the words of the report ontology: nothing here to check")
                item.setForeground(QColor("#9aa0a6"))
            else:
                item = QListWidgetItem(f"{'⚠ ' if s.flagged else ''}[{s.support:.0%}] {s.text}")
                item.setToolTip(("low support: check this sentence against the slide\n" if s.flagged else "") + s.basis)
                item.setForeground(QColor(support_colour(s.support)))
            self.sentences.addItem(item)
        self.unsupported.clear()
        self.unsupported.hide()

    def show_evidence(self, row: int):
        if not 0 <= row < len(self.shown) or self.layer is None:
            return
        self.evidence.show(self.shown[row], self.layer)

    def _on_click(self, viewer, event):
        """List what the draft and answers say about the clicked patch, best supported first."""
        from napari_pathalign._napari.slide_geometry import level0_of_world

        layer = self.layer
        analysis = self.registry.get(slide_of(layer)) if layer is not None else None
        if analysis is None or not analysis.ready or not analysis.statements:
            return
        found = statements_at(analysis, level0_of_world(layer, event.position))
        if found is None:
            self.here.setText("")
            return
        lines = [f"{v:.0%} · {s.text}" for s, v in found.statements[:3]]
        classes = ", ".join(f"{c} {p:.0%}" for c, p in found.class_probabilities.items())
        self.here.setText(
            (
                f"<b>At patch ({found.xy_level0[0]}, {found.xy_level0[1]})</b> ({classes}); the statements "
                "it supports most:<br>"
            )
            + "<br>".join(lines)
        )

    # ------------------------------------------------------------------ export
    def export(self, path: str | Path) -> Path | None:
        """Markdown, JSON or PDF from the suffix; asks before replacing a file."""
        path = Path(path)
        overwrite = False
        if path.exists():
            if not self.confirm(f"{path} exists. Replace it?"):
                self.say(f"Not exported: {path} was kept.")
                return None
            overwrite = True
        text = self.editor.toPlainText()
        d = self.draft.to_dict() if self.draft is not None else {"provenance": {}, "sentences": []}
        try:
            if path.suffix.lower() == ".pdf":
                from napari_pathalign._napari.pdf_export import write_pdf

                write_pdf(text, d["provenance"], d["sentences"], path, overwrite=overwrite)
            else:
                from napari_pathalign.io.report_files import write_report_json, write_report_markdown

                writer = write_report_json if path.suffix.lower() == ".json" else write_report_markdown
                writer(text, d["provenance"], d["sentences"], path, overwrite=overwrite)
        except (ValueError, OSError) as exc:
            self.say(f"Export failed: {exc}", error=True)
            return None
        self.say(f"Exported {path}")
        return path

    def _export_dialog(self, *_):
        suffix = [".md", ".json", ".pdf"][self.export_box.currentIndex()]
        name, _ = QFileDialog.getSaveFileName(
            self, "Export report", f"report{suffix}", f"*{suffix}", options=QFileDialog.DontConfirmOverwrite
        )
        if name:
            self.export(name if name.endswith(suffix) else name + suffix)
