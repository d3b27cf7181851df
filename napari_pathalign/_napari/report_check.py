"""The Report dock's Check: any text in the editor, typed, pasted or drafted, checked against the slide.

Thin: ``SlideAnalysis.check`` (reporting/check.py) does the work in a worker; this lists each sentence
with its support, and the claims the slide does not bear out, whose click shows their evidence.
"""

from __future__ import annotations

from napari.qt.threading import thread_worker
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QListWidgetItem

from napari_pathalign._napari.slide_geometry import scope_polygon
from napari_pathalign._napari.slide_info import slide_of


def support_colour(support: float) -> str:
    """Readable on napari's dark theme: red below the review line, amber up to 0.8, green above."""
    return "#ff6b6b" if support < 0.5 else ("#f0c05a" if support < 0.8 else "#7bd88f")


@thread_worker
def _check(registry, slide, text, polygon=None):
    """Prepare the slide's analysis when needed, then check the text's claims (``SlideAnalysis.check``), against
    the whole slide or, with ``polygon`` (level-0 (x, y)), against that region's patches only ("here")."""
    from napari_pathalign.core.generators import mapped

    analysis = yield from mapped(registry.iter_ready(slide), lambda p: ("progress", str(p)))
    if polygon is not None:
        yield ("progress", "Encoding the region's patches ...")
        analysis = analysis.region(polygon)
    yield ("progress", "Checking each sentence's claims against the " + ("region" if polygon is not None else "slide"))
    return analysis.check(text)


class ReportCheckMixin:
    """Check for the Report dock (it provides ``editor``, ``sentences``, ``unsupported``, ``shown``, ``layer``,
    ``check_scope``: where to check, one of ``slide_geometry.SCOPES``)."""

    def check_text(self, *_):
        """Check the editor's text (typed, pasted or drafted) against the slide, in a worker."""
        layer, text = self.layer, self.editor.toPlainText()
        if layer is None:
            self.say("Select a slide layer opened by PathAlign first.", error=True)
            return None
        from napari_pathalign.reporting.check import MAX_CHARS

        if not text.strip():
            self.say("Type or paste a report into the editor, then press Check.", error=True)
            return None
        if len(text) > MAX_CHARS:
            self.say(
                f"Not checked: the text is {len(text):,} characters; a report to check is at most {MAX_CHARS:,} "
                "(check it part by part).",
                error=True,
            )
            return None
        try:
            polygon = scope_polygon(self.viewer, layer, self.check_scope.currentText())
        except ValueError as exc:
            self.say(f"Not checked: {exc}.", error=True)
            return None
        if self.dirty:
            self.autosave()  # the text checked is the text kept
        self.checked_where = "the slide" if polygon is None else f"the {self.check_scope.currentText()}"
        worker = _check(self.registry, slide_of(layer), text, polygon, _ignore_errors=True)
        worker.yielded.connect(self._on_yield)
        worker.returned.connect(lambda result, layer=layer: self._on_check(layer, result))
        worker.errored.connect(lambda exc: self.say(f"Not checked: {exc}", error=True))
        worker.finished.connect(lambda: (self.check_button.setEnabled(True), self.draft_button.setEnabled(True)))
        self.check_button.setEnabled(False)
        self.draft_button.setEnabled(False)
        return self.start_worker(worker)

    def _on_check(self, layer, result):
        if layer is not self.layer:
            return
        self.check_result = result
        self.show_sentences(result.sentences, checked_only=True)
        for s, c in result.unsupported:
            item = QListWidgetItem(f"✗ {c.kind} '{c.value}' ('{c.phrase}'): {c.probability:.0%} · {s.text}")
            item.setToolTip(c.basis)
            item.setData(Qt.UserRole, self.shown.index(s))
            self.unsupported.addItem(item)
        self.unsupported.setVisible(self.unsupported.count() > 0)
        n_claims = sum(len(s.claims) for s in result.sentences)
        bad = len(result.unsupported)
        self.show_scope(result.in_scope)
        warn = bool(getattr(result.in_scope, "flagged", False))
        if result.in_scope is None:
            warn = bool(getattr(result.in_distribution, "warn", False))
        note = (
            " The slide is outside what the model was trained on: its support is capped at the in-scope probability."
            if warn
            else ""
        )
        self.say(
            f"Checked {len(result.checked)} of {len(result.sentences)} sentences against {self.checked_where} "
            f"({n_claims} claims in the words of "
            f"{result.ontology}); {bad} claim{'s' if bad != 1 else ''} not borne out"
            f"{': click one to see its evidence' if bad else ''}.{note}",
            error=warn,
        )
