"""Clinical facts in report text, read with a report ontology (the embedded one by default).

A draft is scored on what it states, not how it says it: the tumour call (present / absent), the
extent bucket when present, and each background tissue class it names (by its label, the demo
slides' class name). The claims are the ontology's (``reporting/ontology.py``: longest phrase first,
negation-aware), so a negative phrase is never also read as a positive one. A bare "No." or "None."
(an answer) states absence.
"""

from __future__ import annotations

import re

from napari_pathalign.reporting.ontology import Ontology, load_ontology
from napari_pathalign.reporting.vocabulary import TUMOUR_CLASSES, PartTruth, background_tissues, bucket

ANSWER_NO = re.compile(r"(?:^|\s)(?:no[.,]|none\.|no tumour)(?=\s|$)")  # an answer's "No." states absence


def parse_facts(text: str, ontology: Ontology | None = None) -> set[tuple[str, str]]:
    """{('tumour', 'yes'|'no'), ('extent', bucket), ('tissue', class label), ...} stated in ``text``."""
    onto = ontology or load_ontology()
    flat = " ".join(str(text).split())
    claims = onto.find_claims(flat)
    tumour_classes = {c.name for o in onto.organs for c in o.tumour_classes}
    label = {c.name: c.label for o in onto.organs for c in o.classes}
    facts: set[tuple[str, str]] = set()
    negative = any(c.kind == "negative" and (c.value == "tumour" or c.value in tumour_classes) for c in claims)
    if negative or ANSWER_NO.search(" " + flat.lower() + " "):
        facts.add(("tumour", "no"))
    elif any(c.kind == "diagnosis" for c in claims):
        facts.add(("tumour", "yes"))
    if ("tumour", "yes") in facts:
        extents = [c for c in claims if c.kind == "extent"]
        phrased = [c for c in extents if c.percent is None]
        chosen = (phrased or extents)[:1]
        facts |= {("extent", c.value) for c in chosen if c.value}
    facts |= {("tissue", label[c.value]) for c in claims if c.kind == "tissue"}
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
    m = re.match(r"(yes|no)\b", t)
    return m.group(1) if m else None


def parse_extent_answer(text: str, ontology: Ontology | None = None) -> str | None:
    """An answer to 'how much tumour?': 'none' for "None." / "No ...", else the extent bucket it states."""
    t = str(text).strip().lower()
    if re.match(r"(?:none|no)\b", t):
        return "none"
    extents = [c for c in (ontology or load_ontology()).find_claims(str(text)) if c.kind == "extent"]
    phrased = [c for c in extents if c.percent is None]
    return next((c.value for c in phrased or extents), None)
