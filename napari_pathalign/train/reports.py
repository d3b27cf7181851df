"""Part-level curation, as PathAlign does it: split a multi-part report and give each slide its part.

A surgical pathology report often covers several specimens ("A. Colon, biopsy: ...", "PART 2:
...", "Specimen 3 - ..."). A slide shows one of them; pairing it with the whole report would teach
the model findings that are not on the glass. Markers recognised at the start of a line (or after a
sentence end, for the unambiguous word forms):

- letters: ``A.``  ``A)``  ``A:``  ``A -``  ``(A)``
- numbers: ``1.``  ``1)``  ``1:``  ``(1)``
- words:   ``PART 1:``  ``Part B -``  ``Specimen 2 -``  ``SPECIMEN #3:``  ``Specimen A.``

A set of markers counts as parts only when its labels run in order from A (or 1) without gaps, so
"2. Margins are clear" in free text is not mistaken for a part. The same label in several sections
(gross description, final diagnosis) is joined. A slide labelled ``B`` matches part ``B``, or part
``2`` in a report numbered 1, 2, 3 (and the other way round).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = r"(?:part|specimen|spec\.?)\s*#?\s*"
_LABEL = r"(?:[A-Z]|\d{1,2})"
# A marker at a line start: optional "(", optional word, the label, then a delimiter.
_LINE_MARKER = re.compile(
    rf"^[ \t]*(?:\(\s*(?P<p>{_LABEL})\s*\)|(?P<w>{_WORD})?(?P<l>{_LABEL})(?:\s*[.):]|\s+-|\s*\u2013))[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
# Word markers inside running text ("... clear. PART 2: ...").
_INLINE_WORD = re.compile(rf"(?<=[.;:])\s+(?P<w>{_WORD})(?P<l>{_LABEL})(?:\s*[.):]|\s+-)\s*", re.IGNORECASE)
# Letter markers inside running text ("... adenoma. B. Rectum, ..."): only capital letters.
_INLINE_LETTER = re.compile(r"(?<=[.;:])\s+(?P<l>[A-H])[.)]\s+")
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z /&-]{2,40}):[ \t]*$", re.MULTILINE)


@dataclass
class ReportParts:
    """A report cut into parts; ``parts`` is empty when it is a single-specimen report."""

    parts: dict[str, str] = field(default_factory=dict)  # normalised label -> the part's text
    preamble: str = ""  # text before the first part


def normalise_label(label: str) -> str:
    """'part 2' / 'Specimen #2' / '(b)' / 'B.' -> '2' / '2' / 'B' / 'B'."""
    s = re.sub(rf"^\s*{_WORD}", "", str(label).strip(), flags=re.IGNORECASE)
    s = s.strip(" .():-#\t").upper()
    return str(int(s)) if s.isdigit() else s


def _ordinal(label: str) -> int | None:
    if label.isdigit():
        return int(label)
    if len(label) == 1 and label.isalpha():
        return ord(label) - ord("A") + 1
    return None


def _in_order(labels: list[str]) -> bool:
    """Labels count as parts when each is at most one step past the largest seen, starting at 1/A."""
    seen = 0
    for lab in labels:
        k = _ordinal(lab)
        if k is None or k > seen + 1:
            return False
        seen = max(seen, k)
    return seen >= 2  # one marker alone is not a multi-part report


def _markers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, label) of every candidate marker, in text order, one kind of label only."""
    found = []
    for m in _LINE_MARKER.finditer(text):
        label = m.group("p") or m.group("l")
        if not m.group("w") and not m.group("p") and label.isalpha() and label.islower():
            continue  # "a. " at a line start is prose, not a part
        found.append((m.start(), m.end(), normalise_label(label)))
    for rx in (_INLINE_WORD, _INLINE_LETTER):
        found += [(m.start(), m.end(), normalise_label(m.group("l"))) for m in rx.finditer(text)]
    found = sorted({s: (s, e, lab) for s, e, lab in found}.values())
    letters = [f for f in found if f[2].isalpha()]
    numbers = [f for f in found if f[2].isdigit()]
    for group in (letters, numbers):  # prefer letters; a numbered list inside a part stays text
        if _in_order([lab for _, _, lab in group]):
            return group
    return []


def split_report(text: str) -> ReportParts:
    """Cut ``text`` into its parts (see the module docstring for the formats)."""
    text = str(text).replace("\r\n", "\n")
    marks = _markers(text)
    if not marks:
        return ReportParts({}, text.strip())
    parts: dict[str, list[str]] = {}
    for k, (start, end, label) in enumerate(marks):
        stop = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        body = text[end:stop]
        body = " ".join(_HEADER.sub("", body).split())  # a section header belongs to the next section
        if body:
            parts.setdefault(label, []).append(body)
    return ReportParts({lab: " ".join(chunks) for lab, chunks in parts.items()}, " ".join(text[: marks[0][0]].split()))


def part_text(report: str, part: str | None) -> tuple[str | None, str]:
    """The text of ``part`` in ``report``, or (None, why not). A single-part report is all its text."""
    split = split_report(report)
    if not split.parts:
        return (split.preamble, "") if split.preamble else (None, "the report is empty")
    if part is None or str(part).strip() == "":
        return None, f"the report has parts {', '.join(split.parts)} but the slide has no part label"
    label = normalise_label(part)
    if label in split.parts:
        return split.parts[label], ""
    k = _ordinal(label)
    for other in split.parts:
        if _ordinal(other) == k and other.isdigit() != label.isdigit():
            return split.parts[other], ""
    return None, f"part {part!r} is not in the report (it has parts {', '.join(split.parts)})"
