"""Clinical facts in report text, read with the vocabulary the demo reports are written with.

A draft is scored on what it states, not how it says it: the tumour call (present / absent), the
extent bucket when present (small < 10%, moderate 10-30%, extensive > 30%), and each background
tissue class it names. Phrases and the classes they mean are in ``reporting/vocabulary.py``; negative
phrases are matched before positive ones ("negative for metastatic carcinoma" is not a positive).
"""

from __future__ import annotations

import re

from napari_pathalign.reporting.vocabulary import (
    EXTENT,
    NEGATIVE,
    POSITIVE,
    TISSUE,
    TUMOUR_CLASSES,
    TUMOUR_NAME,
    PartTruth,
    background_tissues,
    bucket,
)

_NEG = sorted(
    {p.lower() for ps in NEGATIVE.values() for p in ps} | {"no.", "no,", "no tumour", "none."}, key=len, reverse=True
)
_POS = sorted(
    {p.lower() for ps in POSITIVE.values() for p in ps} | {n.lower() for n in TUMOUR_NAME.values()},
    key=len,
    reverse=True,
)
_TISSUE = sorted(((p.lower(), c) for c, ps in TISSUE.items() for p in ps), key=lambda x: -len(x[0]))
_EXTENT = sorted(((p.lower(), b) for b, ps in EXTENT.items() for p in ps), key=lambda x: -len(x[0]))
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def parse_facts(text: str) -> set[tuple[str, str]]:
    """{('tumour', 'yes'|'no'), ('extent', bucket), ('tissue', class), ...} stated in ``text``."""
    t = " " + " ".join(str(text).lower().split()) + " "
    facts: set[tuple[str, str]] = set()
    rest = t
    if any(p in t for p in _NEG):
        facts.add(("tumour", "no"))
        for p in _NEG:
            rest = rest.replace(p, " ")
    elif any(p in t for p in _POS):
        facts.add(("tumour", "yes"))
    if ("tumour", "yes") in facts:
        b = next((b for p, b in _EXTENT if p in t), None)
        if b is None and (m := _PERCENT.search(t)):
            b = bucket(float(m.group(1)) / 100)
        if b is not None:
            facts.add(("extent", b))
    for p, c in _TISSUE:
        if p in rest:
            facts.add(("tissue", c))
            rest = rest.replace(p, " ")
    return facts


def truth_facts(t: PartTruth) -> set[tuple[str, str]]:
    """The facts a correct report of this slide states."""
    b = bucket(t.tumour_fraction)
    facts = {("tumour", "yes" if b else "no")} | {("tissue", c) for c in background_tissues(t)}
    return facts | ({("extent", b)} if b else set())


def parse_tissue_answer(text: str, source: str) -> set[str]:
    """Classes named in an answer to 'which tissues are present?' (tumour included)."""
    facts = parse_facts(text)
    named = {c for k, c in facts if k == "tissue"}
    return named | ({TUMOUR_CLASSES[source]} if ("tumour", "yes") in facts else set())


def parse_yes_no(text: str) -> str | None:
    t = str(text).strip().lower()
    return "yes" if t.startswith("yes") else "no" if t.startswith("no") else None


def parse_extent_answer(text: str) -> str | None:
    """'None.' -> None-bucket 'none'; 'Less than 10% ...' -> 'small'; etc."""
    t = str(text).strip().lower()
    if t.startswith("none") or t.startswith("no"):
        return "none"
    for key, name in (("less than 10", "small"), ("between 10", "moderate"), ("more than 30", "extensive")):
        if key in t:
            return name
    return next((b for p, b in _EXTENT if p in t), None)
