"""The per-slide report store and report exports: a user's edits survive crashes, corrupt files, full disks."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_pathalign.core import atomic
from napari_pathalign.io.report_files import write_report_json, write_report_markdown
from napari_pathalign.reporting.report_store import ReportStore, ReportStoreError, default_report_dir

ROOT = Path(__file__).resolve().parents[1]
FP = "0123456789abcdef"
SLIDE = "/slides/case-1.svs"
DRAFT = {
    "text": "Colon, biopsy: adenocarcinoma. Margins clear.",
    "provenance": {"model": "embedded", "model_hash": "abc123", "slide_fingerprint": FP, "decoding": {"num_beams": 1}},
    "sentences": [
        {
            "text": "Colon, biopsy: adenocarcinoma.",
            "support": 0.91,
            "flagged": False,
            "evidence_xy_level0": [[224, 448], [672, 0]],
        },
        {"text": "Margins clear.", "support": 0.32, "flagged": True, "evidence_xy_level0": [[0, 0]]},
    ],
}


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.partial"))


def test_constructor_creates_nothing_and_default_folder_is_the_users(tmp_path):
    ReportStore(tmp_path / "reports")
    assert not (tmp_path / "reports").exists()
    assert default_report_dir().parts[-2:] == ("napari-pathalign", "reports")
    assert ReportStore().folder == default_report_dir()


def test_versions_round_trip_in_order(tmp_path):
    store = ReportStore(tmp_path / "reports")
    assert store.load(FP) is None and store.latest_text(FP) is None
    store.add_version(FP, SLIDE, "draft", DRAFT["text"], "model", draft=DRAFT)
    store.add_version(FP, SLIDE, "edit", "Colon: adenocarcinoma.", "user", note="shortened")
    store.add_version(FP, SLIDE, "accepted", "Colon: adenocarcinoma, G2.", "user")

    report = ReportStore(tmp_path / "reports").load(FP)  # a fresh store: from disk only
    assert [v.kind for v in report.versions] == ["draft", "edit", "accepted"]
    assert [v.author for v in report.versions] == ["model", "user", "user"]
    assert report.versions[1].note == "shortened"
    assert report.versions[0].draft == DRAFT
    assert report.slide.path == SLIDE and report.slide.name == "case-1.svs" and report.slide.fingerprint == FP
    assert report.latest_text == "Colon: adenocarcinoma, G2."
    times = [v.time for v in report.versions]
    assert times == sorted(times) and all(t.endswith("+00:00") for t in times)
    assert report.restored_message.startswith("restored the report accepted ")


def test_model_draft_is_never_lost_under_edits(tmp_path):
    store = ReportStore(tmp_path)
    first = dict(
        DRAFT, sentences=[dict(DRAFT["sentences"][0], support=np.float32(0.5), evidence_xy_level0=np.array([[1, 2]]))]
    )
    store.add_version(FP, SLIDE, "draft", "first draft", "model", draft=first)
    for i in range(5):
        store.add_version(FP, SLIDE, "edit", f"edit {i}", "user")
        store.autosave(FP, SLIDE, f"typing {i}")
    store.add_version(FP, SLIDE, "draft", "redrafted", "model", draft=DRAFT)
    store.add_version(FP, SLIDE, "edit", "final edit", "user")

    assert store.model_draft(FP, "first").text == "first draft"
    assert store.model_draft(FP, "first").draft["sentences"][0]["evidence_xy_level0"] == [
        [1, 2]
    ]  # numpy became plain JSON
    assert store.model_draft(FP).text == "redrafted" and store.model_draft(FP).draft == DRAFT
    assert [v.text for v in store.load(FP).versions if v.kind == "edit"] == [f"edit {i}" for i in range(5)] + [
        "final edit"
    ]
    assert store.model_draft("feedbeef") is None
    with pytest.raises(ValueError, match="'first' or 'last'"):
        store.model_draft(FP, "middle")


def test_autosave_newer_than_the_last_version_is_the_latest_text(tmp_path):
    store = ReportStore(tmp_path)
    store.add_version(FP, SLIDE, "edit", "saved", "user")
    store.autosave(FP, SLIDE, "saved, and typing")
    assert store.latest_text(FP) == "saved, and typing"
    report = store.load(FP)
    assert report.versions[-1].text == "saved"  # the autosave sits beside the version, never in place of it
    assert (
        report.restored_message.startswith("restored unsaved text autosaved ")
        and "last saved: the edit saved" in report.restored_message
    )

    store.add_version(FP, SLIDE, "edit", "saved again", "user")  # a save clears the autosave
    assert store.load(FP).autosave is None and store.latest_text(FP) == "saved again"

    # an autosave older than the last version (another window saved since) loses to the version
    store.autosave(FP, SLIDE, "stale typing")
    file = store.path_of(FP)
    doc = json.loads(file.read_text())
    doc["autosave"]["time"] = "2000-01-01T00:00:00+00:00"
    file.write_text(json.dumps(doc))
    assert store.latest_text(FP) == "saved again"
    assert store.load(FP).restored_message.startswith("restored the edit saved ")


def test_autosave_alone_and_chat_round_trip(tmp_path):
    store = ReportStore(tmp_path)
    store.autosave(FP, SLIDE, "started typing before any draft")
    assert store.latest_text(FP) == "started typing before any draft"
    polygon = np.array([[0.0, 0.0], [100.5, 0.0], [100.5, 80.0]])
    store.add_chat_turn(
        FP,
        SLIDE,
        "Is there tumour here?",
        "Yes: adenocarcinoma.",
        region=polygon,
        answer_meta={"support": np.float64(0.8), "nan": float("nan")},
    )
    store.add_chat_turn(FP, SLIDE, "Grade?", "Moderately differentiated.")
    report = ReportStore(tmp_path).load(FP)
    assert [t.question for t in report.chat] == ["Is there tumour here?", "Grade?"]
    assert report.chat[0].region == polygon.tolist() and report.chat[1].region is None
    assert report.chat[0].answer_meta == {"support": 0.8, "nan": None}  # JSON has no NaN
    assert report.autosave.text == "started typing before any draft"  # a chat turn keeps the working text
    assert report.restored_message.endswith("with 2 chat turns")


def test_writers_in_two_threads_lose_no_version(tmp_path):
    store = ReportStore(tmp_path)
    stop = threading.Event()

    def typing():
        i = 0
        while not stop.is_set():
            store.autosave(FP, SLIDE, f"typing {i}")
            i += 1

    worker = threading.Thread(target=typing)
    worker.start()
    try:
        for i in range(20):
            store.add_version(FP, SLIDE, "edit", f"save {i}", "user")
    finally:
        stop.set()
        worker.join()
    assert [v.text for v in store.load(FP).versions] == [f"save {i}" for i in range(20)]


@pytest.mark.parametrize(
    "content",
    [
        b'{"schema_version": 1, "slide": {"pa',
        b"",
        b"\xff\xfe not utf-8",
        b'{"schema_version": 1, "slide": {}}',
        b"[1, 2, 3]",
        b'{"schema_version": "one"}',
    ],
)
def test_corrupt_file_is_set_aside_never_overwritten(tmp_path, content):
    store = ReportStore(tmp_path)
    store.add_version(FP, SLIDE, "edit", "to be corrupted", "user")
    store.path_of(FP).write_bytes(content)

    assert store.load(FP) is None
    aside = list(tmp_path.glob(f"{FP}.corrupt-*.json"))
    assert len(aside) == 1 and aside[0].read_bytes() == content  # moved, byte for byte
    assert str(aside[0]) in store.last_message and "unreadable" in store.last_message
    assert not store.path_of(FP).exists()

    # the dock carries on: a new report starts, and a second corruption gets its own file
    store.add_version(FP, SLIDE, "edit", "new start", "user")
    assert store.last_message == "" and store.latest_text(FP) == "new start"
    store.path_of(FP).write_bytes(b"garbage")
    store.add_version(FP, SLIDE, "edit", "after the second", "user")  # a write also sets a corrupt file aside
    assert "moved aside" in store.last_message
    aside = sorted(tmp_path.glob(f"{FP}.corrupt-*.json"))
    assert len(aside) == 2 and {p.read_bytes() for p in aside} == {content, b"garbage"}
    assert [v.text for v in store.load(FP).versions] == ["after the second"]


def test_file_of_another_fingerprint_is_corrupt(tmp_path):
    store = ReportStore(tmp_path)
    store.add_version("aaaa", SLIDE, "edit", "a", "user")
    os.replace(store.path_of("aaaa"), store.path_of("bbbb"))
    assert store.load("bbbb") is None and "holds the report of 'aaaa'" in store.last_message


def test_newer_schema_is_refused_and_left_alone(tmp_path):
    store = ReportStore(tmp_path)
    store.path_of(FP).write_text('{"schema_version": 99, "whatever": "a newer plugin wrote this"}')
    before = store.path_of(FP).read_bytes()
    with pytest.raises(ReportStoreError, match="newer napari-pathalign"):
        store.load(FP)
    with pytest.raises(ReportStoreError, match="newer napari-pathalign"):
        store.add_version(FP, SLIDE, "edit", "x", "user")
    assert store.path_of(FP).read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))


def _can_write(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("x")
    except OSError:
        return False
    (folder / "probe").unlink()
    return True


def test_read_only_folder_raises_and_leaves_no_partial_file(tmp_path):
    folder = tmp_path / "reports"
    store = ReportStore(folder)
    store.add_version(FP, SLIDE, "edit", "saved before", "user")
    before = store.path_of(FP).read_bytes()
    os.chmod(folder, 0o500)
    try:
        if _can_write(folder):
            pytest.skip("this user (root?) can still write to a 0o500 folder")
        with pytest.raises(ReportStoreError) as info:
            store.add_version(FP, SLIDE, "edit", "not saved", "user")
        assert str(folder) in str(info.value) and "Permission denied" in str(info.value)
        with pytest.raises(ReportStoreError, match="Permission denied"):
            store.autosave(FP, SLIDE, "typing")
        with pytest.raises(ReportStoreError, match="Permission denied"):
            store.add_chat_turn("feedbeef", SLIDE, "q", "a")
        assert store.path_of(FP).read_bytes() == before and partials(folder) == []
        assert store.latest_text(FP) == "saved before"  # reading still works
    finally:
        os.chmod(folder, 0o700)


def test_full_disk_raises_and_leaves_no_partial_file(tmp_path, monkeypatch):
    store = ReportStore(tmp_path)
    store.add_version(FP, SLIDE, "edit", "saved before", "user")
    before = store.path_of(FP).read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(ReportStoreError) as info:
        store.add_version(FP, SLIDE, "edit", "not saved " * 1000, "user")
    assert str(tmp_path) in str(info.value) and os.strerror(errno.ENOSPC) in str(info.value)
    assert store.path_of(FP).read_bytes() == before and partials(tmp_path) == []
    monkeypatch.undo()
    store.add_version(FP, SLIDE, "edit", "space again", "user")
    assert [v.text for v in store.load(FP).versions] == ["saved before", "space again"]


def test_unicode_round_trips(tmp_path):
    texts = [
        "Ünïcödé ß µm — “quotes”",
        "結腸、生検：腺癌。",
        "سرطان غدي في القولون",
        "аденокарцинома",
        "🔬🧫 tumour 👍🏽 ❤️‍🔥",
        "e\u0301 combining",
        "lone surrogate \ud800 kept",
        "tab\tnew\nline \x00 nul",
    ]
    store = ReportStore(tmp_path)
    for t in texts:
        store.add_version(FP, "/slides/スライド 🔬.svs", "edit", t, "user", note=t)
        store.add_chat_turn(FP, "/slides/スライド 🔬.svs", t, t[::-1])
    store.autosave(FP, "/slides/スライド 🔬.svs", texts[4] + texts[1])
    report = ReportStore(tmp_path).load(FP)
    assert [v.text for v in report.versions] == texts and [v.note for v in report.versions] == texts
    assert [(t.question, t.answer) for t in report.chat] == [(t, t[::-1]) for t in texts]
    assert report.latest_text == texts[4] + texts[1]
    assert report.slide.name == "スライド 🔬.svs"


def test_permissions_are_owner_only(tmp_path):
    folder = tmp_path / "deep" / "reports"
    store = ReportStore(folder)
    store.add_version(FP, SLIDE, "edit", "x", "user")
    store.autosave(FP, SLIDE, "y")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path_of(FP).stat().st_mode) == 0o600


def test_find_by_path_reports_a_changed_slide(tmp_path):
    store = ReportStore(tmp_path)
    slide = tmp_path / "case.svs"
    store.add_version("oldcontent", slide, "edit", "written for the old file", "user")
    time.sleep(0.01)
    store.add_version("newcontent", slide, "draft", "drafted on the new file", "model")
    store.add_version("other", tmp_path / "other.svs", "edit", "another slide", "user")
    (tmp_path / "oldcontent.corrupt-20260101T000000Z.json").write_text("ignored")
    assert store.find_by_path(slide) == ["newcontent", "oldcontent"]
    assert store.find_by_path(str(tmp_path / "." / "case.svs")) == [
        "newcontent",
        "oldcontent",
    ]  # same file, other spelling
    assert store.find_by_path(tmp_path / "never.svs") == []
    assert ReportStore(tmp_path / "absent").find_by_path(slide) == []

    # the same content moved: its record follows it
    store.autosave("other", tmp_path / "moved" / "other.svs", "typing")
    assert store.find_by_path(tmp_path / "moved" / "other.svs") == ["other"]


def test_bad_input_is_refused(tmp_path):
    store = ReportStore(tmp_path)
    for fingerprint in ["../escape", "", "a/b", "x" * 200, None]:
        with pytest.raises(ValueError, match="fingerprint"):
            store.add_version(fingerprint, SLIDE, "edit", "x", "user")
    with pytest.raises(ValueError, match="kind must be one of"):
        store.add_version(FP, SLIDE, "final", "x", "user")
    with pytest.raises(ValueError, match="author must be one of"):
        store.add_version(FP, SLIDE, "edit", "x", "pathologist")
    with pytest.raises(ValueError, match="text must be a str"):
        store.autosave(FP, SLIDE, None)
    with pytest.raises(ValueError, match="plain JSON"):
        store.add_version(FP, SLIDE, "draft", "x", "model", draft={"when": object()})
    assert not store.path_of(FP).exists()


_KILL_CHILD = r"""
import sys
from napari_pathalign.reporting.report_store import ReportStore
store = ReportStore(sys.argv[1])
store.add_version("{fp}", "/slides/k.svs", "edit", "the saved version", "user")
print("ready", flush=True)
i = 0
while True:
    i += 1
    # a long text with its number at both ends: a half-written or mixed file would show
    store.autosave("{fp}", "/slides/k.svs", f"<{{i}}>" + "tumour 🔬 " * (i % 4000) + f"</{{i}}>")
"""


@pytest.mark.parametrize("run_s", [0.1, 0.25, 0.4, 0.6, 0.8])  # a naive write tears ~40 % of kills
def test_kill_9_while_autosaving_leaves_a_whole_file(tmp_path, run_s):
    child = subprocess.Popen(
        [sys.executable, "-c", _KILL_CHILD.format(fp=FP), str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(run_s)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    doc = json.loads(ReportStore(tmp_path).path_of(FP).read_bytes())  # parses: never half-written
    store = ReportStore(tmp_path)
    report = store.load(FP)
    assert store.last_message == "" and not list(tmp_path.glob("*.corrupt-*"))
    assert [v.text for v in report.versions] == ["the saved version"]
    text = doc["autosave"]["text"]
    i = int(text[1 : text.index(">")])
    assert i >= 1 and text == f"<{i}>" + "tumour 🔬 " * (i % 4000) + f"</{i}>"
    assert report.latest_text == text
    store.add_version(
        FP, "/slides/k.svs", "edit", "after the crash", "user"
    )  # a leftover temporary file does not get in the way
    assert store.latest_text(FP) == "after the crash"


# ---- exports


def test_exports_read_back_and_refuse_to_overwrite(tmp_path):
    sentences = DRAFT["sentences"] + [
        {"text": "Pipe | in text, NaN support.", "support": float("nan"), "evidence_xy_level0": np.array([[3, 4]])}
    ]
    json_path = write_report_json("Final 🔬 report.", DRAFT["provenance"], sentences, tmp_path / "out" / "report.json")
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc["text"] == "Final 🔬 report." and doc["provenance"] == DRAFT["provenance"]
    assert doc["sentences"][:2] == DRAFT["sentences"] and doc["sentences"][2]["support"] is None
    assert doc["sentences"][2]["evidence_xy_level0"] == [[3, 4]]

    md_path = write_report_markdown("Final 🔬 report.", DRAFT["provenance"], sentences, tmp_path / "report.md")
    md = md_path.read_text(encoding="utf-8")
    assert md.index("Final 🔬 report.") < md.index("| # | sentence | support |") < md.index("## Provenance")
    assert "| 1 | Colon, biopsy: adenocarcinoma. | 0.91 | (224, 448); (672, 0) |" in md
    assert "| 2 | Margins clear. | 0.32 ⚠ |" in md
    assert "Pipe \\| in text" in md and "- **model_hash**: abc123" in md and '"num_beams": 1' in md

    for writer, path in [(write_report_json, json_path), (write_report_markdown, md_path)]:
        before = path.read_bytes()
        with pytest.raises(FileExistsError, match="overwrite=True"):
            writer("other", {}, [], path)
        assert path.read_bytes() == before
        writer("replaced", {}, [], path, overwrite=True)
        assert "replaced" in path.read_text(encoding="utf-8")
    assert partials(tmp_path) == [] and partials(tmp_path / "out") == []
    assert stat.S_IMODE(md_path.stat().st_mode) == 0o644  # an export is meant to be shared


def test_exports_refuse_a_wrong_suffix_or_shape(tmp_path):
    with pytest.raises(ValueError, match="expected '.md'"):
        write_report_markdown("x", {}, [], tmp_path / "report.txt")
    with pytest.raises(ValueError, match="expected '.json'"):
        write_report_json("x", {}, [], tmp_path / "report.md")
    with pytest.raises(ValueError, match="list of dicts"):
        write_report_json("x", {}, ["a sentence"], tmp_path / "report.json")
    with pytest.raises(ValueError, match="provenance must be a dict"):
        write_report_markdown("x", None, [], tmp_path / "report.md")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_raises_clearly(tmp_path):
    """Its parent is a file: no user, root included, can create the store there."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = ReportStore(blocker / "reports")
    with pytest.raises(ReportStoreError) as info:
        store.add_version(FP, SLIDE, "edit", "not saved", "user")
    assert str(blocker) in str(info.value)
    with pytest.raises(ReportStoreError):
        store.autosave(FP, SLIDE, "typing")
    with pytest.raises(ReportStoreError, match="could not read"):
        store.latest_text(FP)
    assert blocker.read_text() == "not a folder"  # nothing written over it
