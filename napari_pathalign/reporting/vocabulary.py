"""Pathology-style reports written from a demo slide's known composition, in varied wording.

The vocabulary below is the contract between the writer and the clinical-fact parser of the
evaluation: every phrase maps to one fact (tumour present or absent, a tissue class, an extent
bucket), and the parser reads drafts back with the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TUMOUR_CLASSES = {"pcam": "tumour", "kather": "TUMOR"}

# Extent of tumour as a fraction of tissue -> bucket name.
BUCKETS = (("small", 0.0, 0.10), ("moderate", 0.10, 0.30), ("extensive", 0.30, 1.01))

ORGAN = {
    "pcam": (
        "Lymph node",
        ["left axillary", "right axillary", "sentinel", "level II axillary", "mesenteric"],
        ["excision", "dissection", "biopsy"],
    ),
    "kather": (
        "Colon",
        ["sigmoid", "ascending", "transverse", "descending", "rectosigmoid"],
        ["biopsy", "resection", "polypectomy"],
    ),
}

POSITIVE = {
    "pcam": [
        "metastatic carcinoma",
        "positive for metastatic carcinoma",
        "involved by metastatic carcinoma",
        "metastatic carcinoma is present",
    ],
    "kather": [
        "invasive adenocarcinoma",
        "adenocarcinoma is present",
        "infiltrating adenocarcinoma",
        "positive for adenocarcinoma",
    ],
}
NEGATIVE = {
    "pcam": [
        "negative for metastatic carcinoma",
        "no evidence of metastatic carcinoma",
        "no tumour identified",
        "benign lymph node, no metastasis",
    ],
    "kather": ["negative for carcinoma", "no evidence of malignancy", "no tumour identified", "no adenocarcinoma seen"],
}
EXTENT = {
    "small": ["a small focus", "a minute focus", "focal involvement"],
    "moderate": ["a moderate proportion", "several confluent areas", "partial involvement"],
    "extensive": ["extensive involvement", "most of the section", "widespread replacement"],
}
TISSUE = {
    "normal": ["lymphoid tissue", "reactive lymphoid tissue", "nodal lymphoid parenchyma"],
    "STROMA": ["desmoplastic stroma", "fibrous stroma", "tumour-associated stroma"],
    "COMPLEX": ["complex stroma", "mixed stromal tissue", "complex stromal tissue"],
    "LYMPHO": ["lymphoid aggregates", "lymphocytic infiltrate", "dense lymphocytes"],
    "DEBRIS": ["necrotic debris", "necrosis with debris", "mucus and debris"],
    "MUCOSA": ["benign colonic mucosa", "normal colonic mucosa", "unremarkable mucosa"],
    "ADIPOSE": ["adipose tissue", "mature fat", "fatty tissue"],
}


def bucket(fraction: float) -> str | None:
    """Tumour fraction of the tissue -> 'small' / 'moderate' / 'extensive'; None when 0."""
    if fraction <= 0:
        return None
    return next(name for name, lo, hi in BUCKETS if lo <= fraction < hi)


@dataclass
class PartTruth:
    """What one demo slide shows (the ground truth its report part is written from)."""

    source: str  # 'pcam' or 'kather'
    fractions: dict  # class -> fraction of tissue cells
    tumour_fraction: float  # fraction of tissue that is tumour


def background_tissues(t: PartTruth, min_fraction: float = 0.10) -> list[str]:
    """Non-tumour classes named in the report: those covering >= 10% of the tissue, largest first."""
    tumour = TUMOUR_CLASSES[t.source]
    keep = [(f, c) for c, f in t.fractions.items() if c != tumour and f >= min_fraction]
    return [c for f, c in sorted(keep, reverse=True)]


def write_part(t: PartTruth, rng: np.random.Generator) -> str:
    """One part's text: specimen, diagnosis, extent, background tissue; wording drawn at random."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    organ, sites, procedures = ORGAN[t.source]
    specimen = f"{organ}, {pick(sites)}, {pick(procedures)}:"
    b = bucket(t.tumour_fraction)
    if b is None:
        diagnosis = pick(NEGATIVE[t.source]).capitalize() + "."
        extent = ""
    else:
        diagnosis = pick(POSITIVE[t.source]).capitalize() + "."
        extent = pick(
            [
                f" Tumour forms {pick(EXTENT[b])} (about {round(t.tumour_fraction * 100)}% of the tissue).",
                f" Extent: {pick(EXTENT[b])}, approximately {round(t.tumour_fraction * 100)}% of the tissue.",
            ]
        )
    tissues = [pick(TISSUE[c]) for c in background_tissues(t)]
    background = ""
    if tissues:
        listed = tissues[0] if len(tissues) == 1 else ", ".join(tissues[:-1]) + " and " + tissues[-1]
        background = " " + pick(
            [f"Background shows {listed}.", f"The remaining tissue is {listed}.", f"Also present: {listed}."]
        )
    return f"{specimen} {diagnosis}{extent}{background}"


def write_report(parts: list[tuple[str, PartTruth]], rng: np.random.Generator) -> str:
    """A case report: one part without markers, or lettered parts under a diagnosis header."""
    if len(parts) == 1:
        return "FINAL DIAGNOSIS:\n" + write_part(parts[0][1], rng)
    style = int(rng.integers(3))
    lines = ["FINAL DIAGNOSIS:"]
    for label, truth in parts:
        marker = {0: f"{label}.", 1: f"{label})", 2: f"PART {ord(label) - ord('A') + 1}:"}[style]
        lines.append(f"{marker} {write_part(truth, rng)}")
    return "\n".join(lines)


# -- closed questions (VQA) -------------------------------------------------------------------
QUESTIONS = {
    "tumour": ["Is tumour present?", "Is there carcinoma in this specimen?", "Does the slide show tumour?"],
    "tissues": ["Which tissues are present?", "What tissue types are seen?", "Name the tissues on this slide."],
    "extent": [
        "What fraction of the tissue is tumour?",
        "How extensive is the tumour?",
        "Approximately how much tumour is there?",
    ],
}
EXTENT_ANSWER = {
    None: "None.",
    "small": "Less than 10% of the tissue.",
    "moderate": "Between 10% and 30% of the tissue.",
    "extensive": "More than 30% of the tissue.",
}
TUMOUR_NAME = {"pcam": "metastatic carcinoma", "kather": "adenocarcinoma"}


def truth_tissues(t: PartTruth) -> list[str]:
    """Classes a correct 'which tissues' answer names: tumour when present, then the background."""
    return ([TUMOUR_CLASSES[t.source]] if t.tumour_fraction > 0 else []) + background_tissues(t)


def answers(t: PartTruth) -> dict[str, str]:
    """Canonical answers to the three closed questions (first phrase of each class)."""
    names = [TUMOUR_NAME[t.source] if c == TUMOUR_CLASSES[t.source] else TISSUE[c][0] for c in truth_tissues(t)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return {
        "tumour": "Yes." if t.tumour_fraction > 0 else "No.",
        "tissues": listed[:1].upper() + listed[1:] + ".",
        "extent": EXTENT_ANSWER[bucket(t.tumour_fraction)],
    }
