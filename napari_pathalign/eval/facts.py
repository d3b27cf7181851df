"""Clinical facts in report text, read with a report ontology (the embedded one by default).

A draft is scored on what it states, not how it says it: the tumour call (present / absent), the
extent bucket when present, each background tissue class it names (by its label, the demo slides'
class name), and, for an organ with several tumour classes (lung), each subtype it names. The
claims are the ontology's (``reporting/ontology.py``: longest phrase first, negation-aware), so a
negative phrase is never also read as a positive one. A bare "No." or "None." (an answer) states
absence.
"""

from __future__ import annotations

import re

from napari_pathalign.eval.truth import PartTruth, background_tissues, organ_of, subtypes, tumour_labels
from napari_pathalign.reporting.ontology import Ontology, load_ontology

ANSWER_NO = re.compile(r"(?:^|\s)(?:no[.,]|none\.|no tumour)(?=\s|$)")  # an answer's "No." states absence


def parse_facts(text: str, ontology: Ontology | None = None, organ: str | None = None) -> set[tuple[str, str]]:
    """{('tumour', 'yes'|'no'), ('extent', bucket), ('tissue', class label), ('subtype', class name), ...}
    stated in ``text``; subtypes only for ``organ`` (the slide's) when it has several tumour classes."""
    onto = ontology or load_ontology()
    flat = " ".join(str(text).split())
    claims = onto.find_claims(flat)
    tumour_classes = {c.name for o in onto.organs for c in o.tumour_classes}
    label = {c.name: c.label for o in onto.organs for c in o.classes}
    facts: set[tuple[str, str]] = set()
    positive = any(c.kind == "diagnosis" for c in claims)
    # "no tumour identified" denies every tumour class; "no squamous cell carcinoma" denies one, and denies the
    # tumour only when the text names no other ("adenocarcinoma; no squamous cell carcinoma" is a tumour)
    negative = any(c.kind == "negative" and c.value == "tumour" for c in claims) or (
        not positive and any(c.kind == "negative" and c.value in tumour_classes for c in claims)
    )
    if negative or ANSWER_NO.search(" " + flat.lower() + " "):
        facts.add(("tumour", "no"))
    elif positive:
        facts.add(("tumour", "yes"))
    if ("tumour", "yes") in facts:
        extents = [c for c in claims if c.kind == "extent"]
        phrased = [c for c in extents if c.percent is None]
        chosen = (phrased or extents)[:1]
        facts |= {("extent", c.value) for c in chosen if c.value}
    facts |= {("tissue", label[c.value]) for c in claims if c.kind == "tissue"}
    if organ is not None and ("tumour", "yes") in facts and len(onto.organ(organ).tumour_classes) > 1:
        facts |= {("subtype", c.value) for c in claims if c.kind == "diagnosis" and organ in c.organs}
    return facts


def truth_facts(t: PartTruth, ontology: Ontology | None = None) -> set[tuple[str, str]]:
    """The facts a correct report of this slide states."""
    onto = ontology or load_ontology()
    b = onto.bucket(t.tumour_fraction)
    facts = {("tumour", "yes" if b else "no")} | {("tissue", c) for c in background_tissues(t, onto)}
    facts |= {("subtype", name) for name in subtypes(t, onto) or ()}
    return facts | ({("extent", b)} if b else set())


def parse_tissue_answer(text: str, truth: PartTruth, ontology: Ontology | None = None) -> set[str]:
    """Class labels named in an answer to 'which tissues are present?' about the slide of ``truth`` (the
    tumour classes included: a named subtype by its label, a bare tumour call as the slide's tumour classes)."""
    onto = ontology or load_ontology()
    organ = organ_of(truth, onto)
    facts = parse_facts(text, onto, organ.name)
    named = {c for k, c in facts if k == "tissue"}
    if ("tumour", "yes") not in facts:
        return named
    said = {name for k, name in facts if k == "subtype"}
    if said:
        return named | {c.label for c in organ.tumour_classes if c.name in said}
    return named | (set(tumour_labels(truth, onto)) or {c.label for c in organ.tumour_classes[:1]})


def parse_subtype_answer(text: str, organ: str, ontology: Ontology | None = None) -> set[str]:
    """Tumour class names an answer to 'which subtype?' names ({} for "No tumour.")."""
    onto = ontology or load_ontology()
    mine = {c.name for c in onto.organ(organ).tumour_classes}
    return {c.value for c in onto.find_claims(" ".join(str(text).split())) if c.kind == "diagnosis" and c.value in mine}


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
