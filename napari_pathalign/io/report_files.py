"""Report files: a drafted or edited report exported as Markdown (to read) or JSON (to process).

Both hold the report text, the sentences with their support scores and evidence coordinates, and
the provenance, all passed in as plain dicts (``Draft.to_dict()`` gives them). Writes are atomic and
replace an existing file only when asked: an export interrupted by a crash or a full disk never
leaves a half-written report that a colleague or a script would trust.

``plain_json`` is shared with the report store, which keeps the
pathologist's working copies.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from napari_pathalign.core.atomic import atomic_write_text

EXPORT_SCHEMA = 1  # "schema" of the JSON export


def plain_json(value, what: str = "value"):
    """``value`` as plain JSON data: numpy scalars and arrays become lists and numbers, NaN and inf become None.

    JSON has no NaN (Python would write the invalid token ``NaN``), and a non-finite support score must
    not make a report unsaveable, so it is stored as null. Anything else that is not JSON raises ValueError.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain_json(v, f"{what}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy array or scalar, without importing numpy here
        return plain_json(value.tolist(), what)
    raise ValueError(
        (
            f"{what} is a {type(value).__name__} ({value!r:.80}); expected plain JSON data (dict, list, "
            "str, number, bool, None)"
        )
    )


def _check_export(path, suffix: str, report_text, provenance, sentences, overwrite: bool) -> tuple[Path, dict, list]:
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(
            f"cannot write this report to {path.name!r}: the suffix is {path.suffix!r}; expected {suffix!r}"
        )
    if not isinstance(report_text, str):
        raise ValueError(f"report_text must be a str, got {type(report_text).__name__}")
    if not isinstance(provenance, dict):
        raise ValueError(f"provenance must be a dict (Draft.to_dict()['provenance']), got {type(provenance).__name__}")
    if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, dict) for s in sentences):
        raise ValueError(
            "sentences must be a list of dicts (Draft.to_dict()['sentences']), each with 'text' and 'support'"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it, or choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, plain_json(provenance, "provenance"), plain_json(list(sentences), "sentences")


def write_report_json(report_text: str, provenance: dict, sentences: list[dict], path, overwrite: bool = False) -> Path:
    """Write the report, its sentences (support, evidence coordinates) and provenance as .json, atomically."""
    path, provenance, sentences = _check_export(path, ".json", report_text, provenance, sentences, overwrite)
    doc = {"schema_version": EXPORT_SCHEMA, "text": report_text, "sentences": sentences, "provenance": provenance}
    return atomic_write_text(
        path, json.dumps(doc, ensure_ascii=False, indent=1, allow_nan=False) + "\n", overwrite=overwrite
    )


def write_report_markdown(
    report_text: str, provenance: dict, sentences: list[dict], path, overwrite: bool = False
) -> Path:
    """Write the report as .md: the text, a table of its sentences with support scores, then the provenance."""
    path, provenance, sentences = _check_export(path, ".md", report_text, provenance, sentences, overwrite)
    lines = ["# Report", ""]
    scope = provenance.get("in_scope") if isinstance(provenance, dict) else None
    if isinstance(scope, dict) and scope.get("flagged"):
        lines += [
            f"> **Out of scope** (in-scope probability {scope.get('score', 0):.2f}): the slide's tissue is outside "
            "what the model was trained on; its claims are not reliable.",
            "",
        ]
    lines += [report_text.strip() or "_(empty)_", ""]
    if sentences:
        lines += [
            "## Sentences and their support",
            "",
            (
                "Support: the probability that the slide bears out the sentence's weakest claim (0 to 1; under "
                "0.5: check it)."
            ),
            "",
            "| # | sentence | support | evidence (level-0 x, y) |",
            "|---:|---|---:|---|",
        ]
        for i, s in enumerate(sentences, 1):
            lines.append(f"| {i} | {_cell(s.get('text', ''))} | {_support(s)} | {_cell(_evidence(s))} |")
        lines.append("")
    if provenance:
        lines += ["## Provenance", ""]
        lines += [f"- **{_one_line(k)}**: {_one_line(_provenance_value(v))}" for k, v in provenance.items()]
        lines.append("")
    return atomic_write_text(path, "\n".join(lines), overwrite=overwrite)


def _one_line(value) -> str:
    return " ".join(str(value).split())


def _cell(value) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return _one_line(value).replace("|", "\\|")


def _support(sentence: dict) -> str:
    support = sentence.get("support")
    if support is None:
        return "–"
    flag = " ⚠" if sentence.get("flagged") else ""  # below the drafting module's LOW_SUPPORT
    return f"{float(support):.2f}{flag}"


def _evidence(sentence: dict) -> str:
    xy = sentence.get("evidence_xy_level0") or []
    number = (int, float)
    return (
        "; ".join(
            f"({p[0]:g}, {p[1]:g})"
            for p in xy
            if isinstance(p, (list, tuple)) and len(p) >= 2 and isinstance(p[0], number) and isinstance(p[1], number)
        )
        or "–"
    )


def _provenance_value(value) -> str:
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, ensure_ascii=False) + "`"
    return "–" if value is None or value == "" else str(value)
