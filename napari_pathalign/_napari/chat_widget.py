"""Dock "Chat": ask questions about the selected slide, the current view or a drawn shape; answers
stream in (Stop), each with its evidence on click, "copy to report", and the conversation kept with
the slide's report store."""

from __future__ import annotations

import napari
import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from napari_pathalign._napari.dock import SlideDock, dock_links
from napari_pathalign._napari.evidence_view import EvidenceView
from napari_pathalign._napari.report_widget import slide_key
from napari_pathalign._napari.slide_geometry import SCOPES, scope_polygon
from napari_pathalign._napari.slide_info import slide_of
from napari_pathalign.reporting.drafting import iter_answer, iter_draft

QUICK = {
    "diagnosis": "Final diagnosis:",
    "tumour?": "Is tumour present?",
    "tissues": "Which tissues are present?",
    "extent": "What fraction of the tissue is tumour?",
}


@thread_worker
def _answer(registry, slide, polygon, question, history):
    from napari_pathalign.core.generators import mapped

    analysis = yield from mapped(registry.iter_ready(slide), lambda p: ("progress", str(p)))
    target = analysis.region(polygon) if polygon is not None else analysis
    gen = iter_draft(target, prompt=question) if question.endswith(":") else iter_answer(target, question, history)
    return (yield from mapped(gen, lambda text: ("text", text)))


class ChatWidget(SlideDock):
    title = "Chat"

    def __init__(self, napari_viewer: napari.Viewer, store=None):
        from napari_pathalign.reporting.report_store import ReportStore

        super().__init__(napari_viewer)
        self.store = store if store is not None else ReportStore()
        self.answers: list = []  # Answer per conversation row (None for question rows)
        self.layer = None
        self.slide_label = QLabel("Select a slide layer.")
        self.history_note = QLabel("")
        self.history_note.setWordWrap(True)
        self.conversation = QListWidget()
        self.conversation.setWordWrap(True)
        self.conversation.setMinimumHeight(160)
        self.question = QLineEdit()
        self.question.setPlaceholderText("Ask about the slide, e.g. Is tumour present?")
        self.scope = QComboBox()
        self.scope.addItems(SCOPES)
        self.ask_button, self.stop_button = QPushButton("Ask"), QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.copy_button = QPushButton("Copy answer to report")
        self.evidence = EvidenceView(napari_viewer)
        quick = QHBoxLayout()
        for name, q in QUICK.items():
            b = QPushButton(name)
            b.clicked.connect(lambda _=False, q=q: self.ask(q))
            quick.addWidget(b)
        row = QHBoxLayout()
        for w in (self.question, self.scope, self.ask_button, self.stop_button):
            row.addWidget(w)
        layout = QVBoxLayout(self)
        layout.addWidget(self.slide_label)
        layout.addWidget(self.history_note)
        layout.addWidget(self.conversation, 3)
        layout.addLayout(quick)
        layout.addLayout(row)
        layout.addWidget(self.copy_button)
        layout.addWidget(self.evidence)
        layout.insertWidget(1, self.scope_banner)
        layout.addWidget(self.status)
        self.ask_button.clicked.connect(lambda: self.ask(self.question.text()))
        self.question.returnPressed.connect(lambda: self.ask(self.question.text()))
        self.stop_button.clicked.connect(self.stop)
        self.copy_button.clicked.connect(self.copy_to_report)
        self.conversation.itemClicked.connect(lambda item: self.show_evidence(self.conversation.row(item)))
        self.follow_slide_selection()

    def layer_changed(self, *_):
        from napari_pathalign.reporting.drafting import trained_with_history
        from napari_pathalign.reporting.report_store import ReportStoreError

        layer = self.viewer.layers.selection.active
        if slide_of(layer) is None or layer is self.layer or (self.worker is not None and self.stop_button.isEnabled()):
            return
        self.layer = layer
        self.slide_label.setText(f"<b>{layer.name}</b>")
        self.show_scope(None)
        self.conversation.clear()
        self.answers = []
        try:
            report = self.store.load(slide_key(slide_of(layer))[0])
        except ReportStoreError as exc:
            self.say(str(exc), error=True)
            report = None
        for turn in getattr(report, "chat", None) or []:
            self._add_row(f"Q: {turn.question}", None)
            understood = ((turn.answer_meta or {}).get("intent") or {}).get("understood_as")
            self._add_row(f"A: {turn.answer}" + (f"\nUnderstood as: {understood}" if understood else ""), None)
        model = self.registry.models.get(("embedded", "auto"))
        uses = model is not None and trained_with_history(model)
        self.history_note.setText(
            "Follow-ups ('And how much?', 'What about SCC?') are read with the conversation; "
            + (
                "the model also sees it."
                if uses
                else "each answer is then computed from the slide (the model was not trained with history)."
            )
        )

    def _add_row(self, text: str, answer) -> QListWidgetItem:
        item = QListWidgetItem(text)
        self.conversation.addItem(item)
        self.answers.append(answer)
        return item

    def _polygon(self):
        return scope_polygon(self.viewer, self.layer, self.scope.currentText())

    def ask(self, question: str):
        from napari_pathalign.reporting.drafting import check_question

        if self.layer is None:
            self.say("Select a slide layer opened by PathAlign first.", error=True)
            return None
        try:
            question = check_question(question)
            polygon = self._polygon()
        except ValueError as exc:
            self.say(str(exc), error=True)
            return None
        history = [(q, a.text) for q, a in self._pairs()]
        slide = slide_of(self.layer)
        worker = _answer(self.registry, slide, polygon, question, history, _ignore_errors=True)
        where = "" if polygon is None else f" [{self.scope.currentText()}]"
        self._add_row(f"Q{where}: {question}", None)
        pending = self._add_row("A: ...", None)
        worker.yielded.connect(
            lambda item: pending.setText(f"A: {item[1]}") if item[0] == "text" else self.status.setText(item[1])
        )
        worker.returned.connect(
            lambda answer, layer=self.layer, q=question, p=polygon, row=self.conversation.row(pending): self._on_answer(
                layer, q, p, row, answer
            )
        )
        worker.errored.connect(lambda exc: self.say(f"Could not answer: {exc}", error=True))
        worker.aborted.connect(lambda: self.say("Stopped: the partial answer is shown and not kept."))
        worker.finished.connect(lambda: (self.ask_button.setEnabled(True), self.stop_button.setEnabled(False)))
        self.ask_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        return self.start_worker(worker)

    def _pairs(self):
        out = []
        for i, a in enumerate(self.answers):
            if a is not None and i > 0:
                out.append((self.conversation.item(i - 1).text().split(": ", 1)[-1], a))
        return out

    def _on_answer(self, layer, question, polygon, row, answer):
        from napari_pathalign.reporting.report_store import ReportStoreError

        self.answers[row] = answer
        low = any(s.flagged for s in answer.sentences)
        understood = (answer.intent or {}).get("understood_as")
        closed = answer.answered and (answer.intent or {}).get("kind") not in (None, "open") and answer.sentences
        self.conversation.item(row).setText(
            f"A: {answer.shown_text}"
            + (f"  (probability {answer.sentences[0].support:.0%})" if closed else "")
            + ("  ⚠ low support" if low else "")
            + (f"\nUnderstood as: {understood}" if understood else "")
            + (f"\n({answer.note})" if answer.note else "")
        )
        self.conversation.item(row).setToolTip(
            "\n".join(f"support {s.support:.0%}: {s.basis}" for s in answer.sentences)
        )
        self.show_scope(answer.in_scope)
        fp, path = slide_key(slide_of(layer))
        try:
            self.store.add_chat_turn(
                fp,
                path,
                question,
                answer.shown_text,
                region=None if polygon is None else np.asarray(polygon).tolist(),
                answer_meta=answer.to_dict(),
            )
        except ReportStoreError as exc:
            self.say(f"The answer is shown but could not be kept: {exc}", error=True)
            return
        self.say("Answered. Click it to see its evidence on the slide.")

    def show_evidence(self, row: int):
        answer = self.answers[row] if 0 <= row < len(self.answers) else None
        if answer is not None and answer.sentences and self.layer is not None:
            self.evidence.show(answer.sentences[0], self.layer)

    def copy_to_report(self, *_):
        row = self.conversation.currentRow()
        answer = self.answers[row] if 0 <= row < len(self.answers) else None
        if answer is None:
            self.say("Select an answer first.", error=True)
            return None
        links = dock_links(self.registry)
        if not links.report_docks:
            self.say("Open the Report dock to copy answers into the report.", error=True)
            return False
        links.text_for_report.emit(f"{answer.question} {answer.text}" if answer.question else answer.text)
        self.say("Copied to the report (marked as an answer in the text; it autosaves).")
        return True
