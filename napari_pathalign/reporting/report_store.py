"""Per-slide report store: the model's drafts, the pathologist's edits and the chat, kept on disk.

A user's edits are sacred, so:

- **One JSON file per slide fingerprint** (``<fingerprint>.json``), keyed by the slide's content hash
  so a renamed or moved slide finds its report; ``find_by_path`` finds reports written for an earlier
  content of the same path ("this slide changed since the report was written").
- **Versions are only appended**: the model's draft, each user save, the accepted report. The model
  draft is never lost under edits; an edit is never lost under a later draft.
- **Autosave** keeps the unsaved working text in the same file, beside the versions, never in place of
  one; the next ``add_version`` clears it. ``latest_text`` gives the autosave when it is newer.
- **Every write is atomic**: a temporary file in the same folder, fsync, ``os.replace``. A crash or a
  kill at any moment leaves the old file or the new one. A read-only or full folder raises
  ``ReportStoreError`` naming the folder and the OS error, and leaves no partial file; the caller
  still holds the text and says where it could not be saved.
- **A corrupt file is never overwritten or deleted**: it is renamed aside to
  ``<fingerprint>.corrupt-<UTC time>.json``; ``load`` then returns None and ``last_message`` says
  where the file went, so the dock can show it and carry on with an empty report. A file written by
  a newer schema is left untouched and raises ``ReportStoreError`` (update the plugin).
- Writers of one folder are serialised (a thread lock, and ``flock`` on ``.lock`` where POSIX has it),
  so an autosave from a worker thread or a second napari window cannot drop a saved version.
- Files are 0o600 and a folder the store creates is 0o700: reports are patient data.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from napari_pathalign.core.clock import utc_now
from napari_pathalign.io.report_files import atomic_write_text, plain_json

try:  # POSIX: serialise writers across processes (two napari windows on one slide)
    import fcntl
except ImportError:  # Windows: within one process only
    fcntl = None

SCHEMA_VERSION = 1  # of the report file; a newer one is refused, never rewritten
KINDS = ("draft", "edit", "accepted")  # the model's draft, a user save, the report the pathologist accepted
AUTHORS = ("model", "user")
FILE_MODE = 0o600  # reports are patient data: owner only
FOLDER_MODE = 0o700
STALE_PARTIAL_S = 24 * 3600  # temporary files older than this were left by a killed writer
_FINGERPRINT = re.compile(r"[0-9A-Za-z_-]{1,128}")  # also a safe file name


class ReportStoreError(ValueError):
    """The report could not be saved or read: the message names the folder (or file) and the OS error."""


@dataclass
class ReportSlide:
    """The slide a report belongs to."""

    path: str  # absolute path when last written (informative; the fingerprint identifies the slide)
    fingerprint: str  # content hash (engine.features.slide_fingerprint)
    name: str  # file name, for messages


@dataclass
class ReportVersion:
    """One saved text of the report; versions are only ever appended."""

    kind: str  # 'draft' (the model's), 'edit' (a user save) or 'accepted'
    text: str  # the report text
    time: str  # ISO 8601 UTC
    author: str  # 'model' or 'user'
    draft: dict | None = None  # the model draft as a plain dict (Draft.to_dict(): provenance, sentences)
    note: str = ""  # what the author said about this version


@dataclass
class ChatTurn:
    """One question to the model about the slide and its answer."""

    question: str
    answer: str
    time: str  # ISO 8601 UTC
    region: list | None = None  # level-0 (x, y) polygon when asked of a region
    answer_meta: dict = field(default_factory=dict)  # support, evidence, provenance of the answer (plain dict)


@dataclass
class Autosave:
    """The working text not yet saved as a version."""

    text: str
    time: str  # ISO 8601 UTC


@dataclass
class SlideReport:
    """Everything stored for one slide."""

    schema_version: int
    slide: ReportSlide
    versions: list[ReportVersion]  # oldest first
    chat: list[ChatTurn]  # oldest first
    autosave: Autosave | None  # unsaved working text, None after a save
    restored_message: str = ""  # from ``load``: what was restored ("restored the edit saved 2026-11-27 14:02")

    @property
    def latest_text(self) -> str | None:
        """The autosave when it is at least as new as the last version, else the last version's text."""
        last = self.versions[-1] if self.versions else None
        if self.autosave is not None and (last is None or _when(self.autosave.time) >= _when(last.time)):
            return self.autosave.text
        return last.text if last is not None else None

    def model_draft(self, which: str = "last") -> ReportVersion | None:
        """The ``'first'`` or ``'last'`` version of kind 'draft', or None when the model never drafted."""
        if which not in ("first", "last"):
            raise ValueError(f"which must be 'first' or 'last', got {which!r}")
        drafts = [v for v in self.versions if v.kind == "draft"]
        return (drafts[0] if which == "first" else drafts[-1]) if drafts else None


def default_report_dir() -> Path:
    """The user's folder for reports (platformdirs: ~/.local/share/napari-pathalign/reports on Linux)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-pathalign")) / "reports"


class ReportStore:
    """Drafts, edits and chat per slide fingerprint, in one folder of JSON files.

    ``last_message`` holds what the last call had to say besides its result (a corrupt file moved
    aside), '' when nothing; each public call resets it. A store touches the disk only when called:
    the constructor creates nothing.
    """

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else default_report_dir()
        self.last_message = ""
        self._lock = threading.RLock()
        self._swept = False  # stale temporary files removed once per store

    # ---- reading
    def load(self, fingerprint: str) -> SlideReport | None:
        """The slide's report with ``restored_message`` set; None when there is none or the file was corrupt
        (then ``last_message`` says where it was moved)."""
        self.last_message = ""
        report = self._read(fingerprint, for_write=False)
        if report is not None:
            report.restored_message = _restored_message(report)
        return report

    def latest_text(self, fingerprint: str) -> str | None:
        """The text to show: the autosave when newer than the last version, else the last version; None when none."""
        self.last_message = ""
        report = self._read(fingerprint, for_write=False)
        return report.latest_text if report is not None else None

    def model_draft(self, fingerprint: str, which: str = "last") -> ReportVersion | None:
        """The model's ``'first'`` or ``'last'`` draft of the slide, whatever was edited since; None when none."""
        self.last_message = ""
        report = self._read(fingerprint, for_write=False)
        return report.model_draft(which) if report is not None else None

    def find_by_path(self, path) -> list[str]:
        """Fingerprints of the reports written for the slide at ``path``, most recently written first.

        More than one, or one that is not the slide's fingerprint now, means the file's content changed
        since a report was written. Unreadable files are skipped here (``load`` deals with them).
        """
        self.last_message = ""
        target = _slide_path(path)
        if not self.folder.is_dir():
            return []
        found = []
        for file in self.folder.glob("*.json"):
            if not _FINGERPRINT.fullmatch(file.stem):  # skips '<fp>.corrupt-<time>' files
                continue
            try:
                doc = json.loads(file.read_bytes())
                if doc["slide"]["path"] == target:
                    found.append((file.stat().st_mtime_ns, file.stem))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return [fp for _, fp in sorted(found, reverse=True)]

    # ---- writing
    def add_version(
        self, fingerprint: str, slide_path, kind: str, text: str, author: str, draft: dict | None = None, note: str = ""
    ) -> SlideReport:
        """Append a version (the model's draft, a user save, the accepted report) and clear the autosave."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if author not in AUTHORS:
            raise ValueError(f"author must be one of {AUTHORS}, got {author!r}")
        _check_str(text, "text")
        _check_str(note, "note")
        if draft is not None and not isinstance(draft, dict):
            raise ValueError(f"draft must be a plain dict (Draft.to_dict()) or None, got {type(draft).__name__}")
        version = ReportVersion(
            kind=kind,
            text=text,
            time=utc_now("microseconds"),
            author=author,
            draft=None if draft is None else plain_json(draft, "draft"),
            note=note,
        )

        def change(report: SlideReport) -> bool:
            report.versions.append(version)
            report.autosave = None
            return True

        return self._update(fingerprint, slide_path, change)

    def autosave(self, fingerprint: str, slide_path, text: str) -> None:
        """Keep the unsaved working text beside the versions (never in place of one); cheap and atomic.

        Nothing is written when the text is already the autosave or the last saved version.
        """
        _check_str(text, "text")

        def change(report: SlideReport) -> bool:
            if report.latest_text == text:
                return False
            report.autosave = Autosave(text=text, time=utc_now("microseconds"))
            return True

        self._update(fingerprint, slide_path, change)

    def add_chat_turn(
        self,
        fingerprint: str,
        slide_path,
        question: str,
        answer: str,
        region: list | None = None,
        answer_meta: dict | None = None,
    ) -> SlideReport:
        """Append a question and the model's answer; ``region``: level-0 (x, y) polygon when asked of a region."""
        _check_str(question, "question")
        _check_str(answer, "answer")
        if answer_meta is not None and not isinstance(answer_meta, dict):
            raise ValueError(f"answer_meta must be a plain dict or None, got {type(answer_meta).__name__}")
        turn = ChatTurn(
            question=question,
            answer=answer,
            time=utc_now("microseconds"),
            region=None if region is None else plain_json(region, "region"),
            answer_meta=plain_json(answer_meta or {}, "answer_meta"),
        )

        def change(report: SlideReport) -> bool:
            report.chat.append(turn)
            return True

        return self._update(fingerprint, slide_path, change)

    # ---- the file
    def path_of(self, fingerprint: str) -> Path:
        """The file that holds the slide's report."""
        if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
            raise ValueError(
                f"fingerprint must be 1-128 letters, digits, '-' or '_' (a slide content hash), got {fingerprint!r}"
            )
        return self.folder / f"{fingerprint}.json"

    def _update(self, fingerprint: str, slide_path, change) -> SlideReport:
        """Read, ``change`` in place (returns whether anything changed), write; all under the writers' lock."""
        self.last_message = ""
        file = self.path_of(fingerprint)
        slide = ReportSlide(path=_slide_path(slide_path), fingerprint=fingerprint, name=Path(str(slide_path)).name)
        with self._writer_lock():
            report = self._read(fingerprint, for_write=True)
            if report is None:
                report = SlideReport(schema_version=SCHEMA_VERSION, slide=slide, versions=[], chat=[], autosave=None)
            moved = report.slide != slide  # the same content at a new path: remember where it is now
            report.slide = slide
            if change(report) or moved:
                doc = _to_doc(report)
                try:
                    atomic_write_text(
                        file, json.dumps(doc, allow_nan=False) + "\n", mode=FILE_MODE
                    )  # no indent: the C encoder, ~10x faster
                except OSError as e:
                    raise self._error(f"could not save the report of {slide.name}", e) from e
        return report

    def _read(self, fingerprint: str, for_write: bool) -> SlideReport | None:
        """The stored report; a corrupt file is moved aside (None, ``last_message`` says so)."""
        file = self.path_of(fingerprint)
        try:
            raw = file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ReportStoreError(f"could not read the report file {file}: {e}") from e
        try:
            doc = json.loads(raw)
        except ValueError as e:  # invalid JSON or invalid UTF-8
            return self._set_aside(file, f"it is not valid JSON ({e})", for_write)
        version = doc.get("schema_version") if isinstance(doc, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise ReportStoreError(
                (
                    f"{file} was written by a newer napari-pathalign (report schema "
                    f"{version}; this one reads {SCHEMA_VERSION}); "
                    "update napari-pathalign to open or change it. The file was left as it is"
                )
            )
        try:
            return _parse(doc, fingerprint)
        except (KeyError, TypeError, ValueError) as e:
            return self._set_aside(file, f"it is not a report file of schema {SCHEMA_VERSION} ({e})", for_write)

    def _set_aside(self, file: Path, reason: str, for_write: bool) -> None:
        """Rename a corrupt file to '<fingerprint>.corrupt-<UTC time>.json', never over another one."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = file.with_name(f"{file.stem}.corrupt-{stamp}.json")
        n = 2
        while aside.exists():
            aside = file.with_name(f"{file.stem}.corrupt-{stamp}-{n}.json")
            n += 1
        try:
            os.rename(file, aside)
        except FileNotFoundError:  # another window moved it aside first
            self.last_message = (
                f"the report file {file.name} was unreadable ({reason}) and has been moved aside; starting "
                "an empty report"
            )
            return None
        except OSError as e:
            message = (
                f"the report file {file} is unreadable ({reason}) and could not be moved aside ({e}); it was "
                "left as it is"
            )
            if for_write:
                raise ReportStoreError(message + ", so nothing was saved over it") from e
            self.last_message = message
            return None
        self.last_message = (
            f"the report file {file.name} was unreadable ({reason}); it was moved aside to {aside}, and "
            "the slide's report starts empty"
        )
        return None

    @contextmanager
    def _writer_lock(self):
        """One writer per folder: a thread lock, and an flock on '.lock' across processes where POSIX has it."""
        with self._lock:
            self._ensure_folder()
            if fcntl is None:
                yield
                return
            try:
                fd = os.open(self.folder / ".lock", os.O_RDONLY | os.O_CREAT, FILE_MODE)
            except OSError as e:
                raise self._error("could not save the report", e) from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._sweep_partials()
                yield
            finally:
                os.close(fd)  # releases the flock

    def _ensure_folder(self) -> None:
        if self.folder.is_dir():
            return
        try:
            self.folder.mkdir(parents=True, mode=FOLDER_MODE)
            os.chmod(self.folder, FOLDER_MODE)  # mkdir's mode is filtered by the umask
        except FileExistsError:
            pass
        except OSError as e:
            raise self._error("could not create the report folder", e) from e

    def _sweep_partials(self) -> None:
        """Remove temporary files a killed writer left (old enough that no live writer owns them)."""
        if self._swept:
            return
        self._swept = True
        cutoff = time.time() - STALE_PARTIAL_S
        for tmp in self.folder.glob(".*.json.*.partial"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass

    def _error(self, what: str, e: OSError) -> ReportStoreError:
        return ReportStoreError(
            (
                f"{what} in {self.folder}: {e}. The text is still open; make the folder writable or free disk "
                "space and save again, or copy the text elsewhere"
            )
        )


def _to_doc(report: SlideReport) -> dict:
    """The file's JSON. Shallow on purpose: drafts and answer_meta are plain JSON already, and
    ``dataclasses.asdict`` deep-copies them, which made an autosave of a long chat take 0.5 s."""
    return {
        "schema_version": SCHEMA_VERSION,
        "slide": vars(report.slide),
        "versions": [vars(v) for v in report.versions],
        "chat": [vars(t) for t in report.chat],
        "autosave": None if report.autosave is None else vars(report.autosave),
    }


def _parse(doc, fingerprint: str) -> SlideReport:
    """A SlideReport from a file's JSON; KeyError, TypeError or ValueError says what is wrong."""
    if not isinstance(doc, dict):
        raise TypeError(f"the file holds a {type(doc).__name__}, not an object")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version is {doc['schema_version']!r}")
    s = doc["slide"]
    slide = ReportSlide(
        path=_str(s["path"], "slide.path"),
        fingerprint=_str(s["fingerprint"], "slide.fingerprint"),
        name=_str(s["name"], "slide.name"),
    )
    if slide.fingerprint != fingerprint:
        raise ValueError(f"the file is named for {fingerprint!r} but holds the report of {slide.fingerprint!r}")
    versions = []
    for i, v in enumerate(_list(doc["versions"], "versions")):
        if v["kind"] not in KINDS or v["author"] not in AUTHORS:
            raise ValueError(f"versions[{i}] has kind {v['kind']!r}, author {v['author']!r}")
        if v.get("draft") is not None and not isinstance(v["draft"], dict):
            raise TypeError(f"versions[{i}].draft is a {type(v['draft']).__name__}")
        versions.append(
            ReportVersion(
                kind=v["kind"],
                text=_str(v["text"], f"versions[{i}].text"),
                time=_time(v["time"]),
                author=v["author"],
                draft=v.get("draft"),
                note=_str(v.get("note", ""), f"versions[{i}].note"),
            )
        )
    chat = []
    for i, t in enumerate(_list(doc["chat"], "chat")):
        region = t.get("region")
        if region is not None:
            _list(region, f"chat[{i}].region")
        meta = t.get("answer_meta") or {}
        if not isinstance(meta, dict):
            raise TypeError(f"chat[{i}].answer_meta is a {type(meta).__name__}")
        chat.append(
            ChatTurn(
                question=_str(t["question"], f"chat[{i}].question"),
                answer=_str(t["answer"], f"chat[{i}].answer"),
                time=_time(t["time"]),
                region=region,
                answer_meta=meta,
            )
        )
    a = doc["autosave"]
    autosave = None if a is None else Autosave(text=_str(a["text"], "autosave.text"), time=_time(a["time"]))
    return SlideReport(schema_version=SCHEMA_VERSION, slide=slide, versions=versions, chat=chat, autosave=autosave)


def _restored_message(report: SlideReport) -> str:
    """'restored the edit saved 2026-11-27 14:02, with 3 chat turns' (times in the computer's zone)."""
    last = report.versions[-1] if report.versions else None
    what = {"draft": "the model draft of", "edit": "the edit saved", "accepted": "the report accepted"}
    main = None
    if report.autosave is not None and report.latest_text == report.autosave.text:
        saved = f" (last saved: {what[last.kind]} {_local(last.time)})" if last else ""
        main = f"restored unsaved text autosaved {_local(report.autosave.time)}{saved}"
    elif last is not None:
        main = f"restored {what[last.kind]} {_local(last.time)}"
    n = len(report.chat)
    chat = f"{n} chat turn{'s' if n != 1 else ''}" if n else None
    if main and chat:
        return f"{main}, with {chat}"
    return main or (f"restored {chat}" if chat else "nothing to restore")


def _slide_path(path) -> str:
    if path is None or str(path) == "":
        raise ValueError(f"slide_path must be the slide's file or folder, got {path!r}")
    return str(Path(str(path)).expanduser().resolve())


def _check_str(value, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")


def _str(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is a {type(value).__name__}, not a string")
    return value


def _list(value, what: str) -> list:
    if not isinstance(value, list):
        raise TypeError(f"{what} is a {type(value).__name__}, not a list")
    return value


def _time(value) -> str:
    _when(_str(value, "time"))  # ValueError when not ISO 8601
    return value


def _when(iso: str) -> datetime:
    t = datetime.fromisoformat(iso)
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def _local(iso: str) -> str:
    """'2026-11-27 14:02' in the computer's time zone, for messages."""
    return _when(iso).astimezone().strftime("%Y-%m-%d %H:%M")
