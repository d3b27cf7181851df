"""Report and Chat docks in a real viewer (Xvfb) on the real demo lymph node: drafting streams, edits
autosave and come back, versions and exports, evidence, chat turns; a kill -9 after an edit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.resources import files

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_pathalign._napari.preferences import PLUGIN  # noqa: E402

DEMO = str(files("napari_pathalign.resources") / "demo-lymph-node.tif")


@pytest.fixture
def docks(make_napari_viewer, tmp_path, monkeypatch):
    from napari_pathalign._napari.chat_widget import ChatWidget
    from napari_pathalign._napari.report_widget import ReportWidget
    from napari_pathalign.reporting.report_store import ReportStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.status_line.show_error", errors.append)
    viewer = make_napari_viewer(show=True)
    layer = viewer.open(DEMO, plugin=PLUGIN)[0]
    store = ReportStore(tmp_path / "reports")
    report, chat = ReportWidget(viewer, store), ChatWidget(viewer, store)
    viewer.window.add_dock_widget(report, name="Report")
    viewer.window.add_dock_widget(chat, name="Chat", tabify=True)
    viewer.layers.selection.active = layer
    report.layer_changed()
    chat.layer_changed()
    report.confirm = chat.confirm = lambda question: True
    return viewer, layer, report, chat, store, errors


def _finish(qtbot, worker, timeout=120000):
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass
    qtbot.wait(50)


def test_draft_edit_autosave_restore_versions_export(docks, qtbot, tmp_path, output_dir):
    from napari_pathalign._napari.report_widget import ReportWidget, slide_key

    viewer, layer, report, chat, store, errors = docks
    seen = []
    worker = report.start_draft()
    worker.yielded.connect(lambda item: seen.append(item))
    _finish(qtbot, worker)
    assert sum(kind == "text" for kind, _ in seen) > 5  # streamed token by token into the editor
    text = report.editor.toPlainText()
    assert "Lymph node" in text and report.sentences.count() == len(report.draft.sentences) >= 2
    fp, _ = slide_key(layer.metadata["slide"])
    assert store.model_draft(fp).text == text  # the model's draft is kept
    report.show_evidence(0)
    assert report.evidence.layer in viewer.layers and len(report.evidence.buttons) == 6
    before = tuple(viewer.camera.center)
    report.evidence.buttons[0].click()
    assert tuple(viewer.camera.center) != before
    assert (
        "measured" in report.evidence.label.text() or "probability" in report.evidence.label.text()
    )  # how the support was reached
    shown = np.asarray(report.evidence.layer.data).copy()
    report.evidence.map.setCurrentIndex(1)  # what the similarity used: another map, the same statement
    assert "gradient x input" in report.evidence.label.text() and len(report.evidence.buttons) == 6
    assert not np.array_equal(np.asarray(report.evidence.layer.data), shown, equal_nan=True)
    report.evidence.map.setCurrentIndex(
        2
    )  # what the claim measured: the first sentence is a diagnosis, nothing measured
    assert "no measured claim" in report.evidence.label.text()
    extent = next(
        (k for k, s in enumerate(report.draft.sentences) if any(c.kind in ("extent", "tissue") for c in s.claims)), None
    )
    assert extent is not None  # the demo node's draft names its extent and background
    report.show_evidence(extent)
    assert "was measured on" in report.evidence.label.text()
    report.evidence.map.setCurrentIndex(0)
    # evidence the other way: a click on a patch lists what the draft says about it
    xy = report.draft.sentences[0].evidence.top_xy_level0[0] + 5
    report._on_click(viewer, type("E", (), {"position": layer.data_to_world((xy[1], xy[0]))})())
    assert (
        "the statements it supports most" in report.here.text()
        and report.draft.sentences[0].text[:20] in report.here.text()
    )
    # an edit (unicode included) is on disk within 2 s, and comes back in a new dock
    report.editor.setPlainText(text + "\nComment: Ki-67 ≈ 5 % — réviser ✓")
    qtbot.wait(2100)
    assert store.latest_text(fp).endswith("réviser ✓")
    assert store.model_draft(fp).text == text  # edits never replace the model's draft
    again = ReportWidget(viewer, store)
    again.layer_changed()
    assert again.editor.toPlainText().endswith("réviser ✓") and "restored" in again.status.text().lower()
    assert report.save_version("accepted") and store.load(fp).versions[-1].kind == "accepted"
    # exports, never overwriting without asking
    md, js, pdf = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "r.pdf"
    assert report.export(md) == md and "réviser" in md.read_text()
    assert report.export(js) == js and json.loads(js.read_text())["sentences"]
    assert report.export(pdf) == pdf and pdf.read_bytes().startswith(b"%PDF")
    report.confirm = lambda question: False
    md.write_text("keep me")
    assert report.export(md) is None and md.read_text() == "keep me"
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3]).save(output_dir / "report-dock.png")


def test_closing_napari_with_unsaved_edits_asks_and_keeps_them(docks, qtbot):
    from napari_pathalign._napari.report_widget import slide_key

    viewer, layer, report, chat, store, errors = docks
    asked = []
    report.confirm = lambda question: asked.append(question) or True  # "yes, save a version"
    report.editor.setPlainText("Lymph node: my own words, not saved yet.")
    assert report.dirty
    fp, _ = slide_key(layer.metadata["slide"])
    from qtpy.QtGui import QCloseEvent

    window = viewer.window._qt_window
    assert report._watched() is window  # the dock watches napari's main window (its contents get no close event)
    report.eventFilter(
        window, QCloseEvent()
    )  # what Qt calls when the user closes napari (closing for real would end the test's viewer)
    assert asked and "unsaved edits" in asked[0] and not report.dirty
    assert store.latest_text(fp) == "Lymph node: my own words, not saved yet."


def test_case_report_of_the_open_slides(docks, qtbot, wsi_dir):
    from napari_pathalign._napari.report_widget import slide_key
    from napari_pathalign.train.reports import split_report

    viewer, layer, report, chat, store, errors = docks
    assert report.compose_case() is None and "at least two open slides" in report.status.text()
    other = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=PLUGIN)[0]
    fp, path = slide_key(other.metadata["slide"])
    store.add_version(fp, path, "draft", "Skin, excision: No tumour identified.", "model")
    viewer.layers.selection.active = layer
    report.editor.setPlainText("FINAL DIAGNOSIS:\nLymph node, sentinel, excision: Metastatic carcinoma.")
    text = report.compose_case()
    parts = split_report(text).parts
    assert (
        set(parts) == {"A", "B"} and "Metastatic carcinoma" in parts["A"] and "Skin" in parts["B"]
    )  # layer order: the demo node first
    assert report.editor.toPlainText() == text and report.dirty and "A. demo-lymph-node" in report.status.text()


def test_stop_mid_draft_keeps_partial_text_unsaved(docks, qtbot):
    viewer, layer, report, chat, store, errors = docks
    worker = report.start_draft()
    worker.yielded.connect(lambda item: report.stop() if item[0] == "text" else None)
    _finish(qtbot, worker)
    assert "Stopped" in report.status.text() and report.draft_button.isEnabled()


def test_unwritable_store_keeps_the_text_and_says_where(docks, qtbot, tmp_path):
    """The store's folder cannot be made (its parent is a file: no user, root included, can write
    there), as with a read-only or missing app-data folder: the dock says so and keeps the text."""
    from napari_pathalign._napari.report_widget import slide_key
    from napari_pathalign.reporting.report_store import ReportStore

    viewer, layer, report, chat, store, errors = docks
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the app-data folder should be")
    report.store = ReportStore(blocker / "reports")
    report.editor.setPlainText("my careful edit")
    qtbot.wait(2100)
    assert "Could not autosave" in report.status.text() and str(blocker) in report.status.text()
    assert report.editor.toPlainText() == "my careful edit" and report.dirty
    assert not report.save_version() and "Not saved" in report.status.text()
    report.store = store  # the folder is back: the next save works and nothing was lost
    assert report.save_version() and store.latest_text(slide_key(layer.metadata["slide"])[0]) == "my careful edit"


def test_check_a_typed_report_lists_unsupported_claims_with_evidence(docks, qtbot, output_dir):
    """The pathologist's own words, checked: the demo node has moderate metastatic carcinoma, no fat."""
    viewer, layer, report, chat, store, errors = docks
    assert report.check_text() is None and "Type or paste a report" in report.status.text()
    report.editor.setPlainText(
        "Lymph node, sentinel, excision:\nMetastatic carcinoma is present.\n"
        "Extent: between 10% and 30%.\nBackground: mature fat."
    )
    _finish(qtbot, report.check_text())
    assert [report.sentences.item(k).text()[:7] for k in range(report.sentences.count())][0] == "[  -  ]"
    assert "Checked 3 of 4 sentences" in report.status.text()
    assert report.unsupported.isVisible() and report.unsupported.count() == 1
    item = report.unsupported.item(0)
    assert "tissue 'adipose'" in item.text() and "mature fat" in item.text()
    report.unsupported.itemClicked.emit(item)  # a click shows that claim's sentence on the slide
    assert report.evidence.layer in viewer.layers and "mature fat" in report.evidence.label.text()
    viewer.window._qt_window.resize(1600, 1000)
    report.parentWidget().raise_()  # the Report tab in front of the Chat tab it shares the dock area with
    qtbot.wait(200)
    viewer.screenshot(str(output_dir / "report-check.png"), canvas_only=False)
    report.editor.setPlainText("Specimen received in formalin.")
    _finish(qtbot, report.check_text())
    assert "Not checked: nothing in this report can be checked" in report.status.text()
    report.editor.setPlainText("x" * 1_048_576)  # a pasted megabyte: refused in words, napari keeps working
    assert report.check_text() is None and "1,048,576 characters" in report.status.text()
    assert report.check_button.isEnabled()


def test_chat_quick_question_evidence_copy_and_scope(docks, qtbot):
    from napari_pathalign._napari.report_widget import slide_key

    viewer, layer, report, chat, store, errors = docks
    worker = chat.ask("Is tumour present?")
    _finish(qtbot, worker)
    answer = chat.answers[-1]
    assert answer is not None and answer.text and chat.conversation.count() == 2
    assert "Understood as: is any tumour present?" in chat.conversation.item(1).text()
    _finish(qtbot, chat.ask("And how much?"))  # a follow-up is read with the conversation
    assert "Understood as: how much of the tissue is" in chat.conversation.item(3).text()
    assert chat.answers[-1].history_used and chat.answers[-1].intent["kind"] == "extent"
    _finish(qtbot, chat.ask("What is the patient's age?"))
    assert chat.conversation.item(5).text().startswith("A: I can't answer that from this slide")
    chat.show_evidence(1)
    assert chat.evidence.layer in viewer.layers
    chat.conversation.setCurrentRow(1)
    assert chat.copy_to_report() is True and answer.text in report.editor.toPlainText()
    turns = store.load(slide_key(layer.metadata["slide"])[0]).chat
    assert turns[0].question == "Is tumour present?" and turns[0].answer == answer.text
    for bad, message in (("", "empty"), ("x" * 5000, "characters")):
        assert chat.ask(bad) is None and message in chat.status.text()
    chat.scope.setCurrentText("selected shape")
    assert chat.ask("Is tumour present?") is None and "no shape is selected" in chat.status.text()
    # a closed Report dock leaves the viewer: its click callback and its link to the Chat dock are gone
    assert report._on_click in viewer.mouse_drag_callbacks
    report.close()
    assert report._on_click not in viewer.mouse_drag_callbacks and not report.busy
    chat.conversation.setCurrentRow(1)
    assert chat.copy_to_report() is False and "Open the Report dock" in chat.status.text()
    chat.scope.setCurrentText("current view")
    worker = chat.ask("Is tumour present?")
    _finish(qtbot, worker)
    question_row = chat.conversation.count() - 2
    assert "[current view]" in chat.conversation.item(question_row).text()
    assert chat.answers[-1].provenance.region is not None


CHILD = r"""
import sys, time
from napari_pathalign.reporting.report_store import ReportStore
import napari
from qtpy.QtWidgets import QApplication
from napari_pathalign._napari.report_widget import ReportWidget
viewer = napari.Viewer(show=False)
viewer.open(sys.argv[1], plugin="napari-pathalign")
w = ReportWidget(viewer, ReportStore(sys.argv[2]))
w.layer_changed()
w.editor.setPlainText(sys.argv[3])
end = time.monotonic() + 2.5
while time.monotonic() < end:
    QApplication.processEvents()
    time.sleep(0.02)
print("typed", flush=True)
while True:
    QApplication.processEvents()
    time.sleep(0.02)
"""


def test_kill_9_after_an_edit_keeps_the_edit(tmp_path):
    """napari killed 2.5 s after an edit: on restart the edit is there."""
    from napari_pathalign.engine.features import slide_fingerprint
    from napari_pathalign.reporting.report_store import ReportStore

    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), NAPARI_CONFIG=str(tmp_path / "napari.yaml"))
    text = "Edit typed just before the crash: metastatic carcinoma, 2 foci."
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, DEMO, str(tmp_path / "reports"), text],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "typed" not in (child.stdout.readline() or ""):
            pass
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert ReportStore(tmp_path / "reports").latest_text(slide_fingerprint(DEMO)) == text
