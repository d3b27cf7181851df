"""What a demo slide shows, read through a report ontology: the ground truth the evaluation scores against.

A demo slide's truth is its class fractions keyed by class-map label (``slides.csv``). The ontology's
``label`` fields say which organ and class each label is, so nothing here names a tissue: the same
code scores a lymph node, a colon, a lung, or an organ of a user's own ontology.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_pathalign.reporting.ontology import Ontology, Organ, ReportClass, load_ontology

NAMED_FRACTION = 0.10  # a background tissue a report names covers at least this share of the tissue


@dataclass
class PartTruth:
    """What one demo slide shows (the ground truth its report part is written from)."""

    source: str  # the tile set it was built from: 'pcam', 'kather', 'lung', ...
    fractions: dict  # class-map label -> fraction of tissue cells
    tumour_fraction: float  # fraction of tissue taken by the organ's tumour classes


def organ_of(t: PartTruth, ontology: Ontology | None = None) -> Organ:
    """The ontology organ whose class labels the slide's fractions use (the one with most of them)."""
    onto = ontology or load_ontology()
    labels = set(t.fractions)
    best = max(onto.organs, key=lambda o: len(labels & {c.label for c in o.classes}))
    if not labels & {c.label for c in best.classes}:
        raise ValueError(
            f"no organ of ontology {onto.name!r} has the class labels {sorted(labels)}; "
            "give each class a 'label' equal to its name in the class maps"
        )
    return best


def by_label(organ: Organ) -> dict[str, ReportClass]:
    return {c.label: c for c in organ.classes}


def tumour_labels(t: PartTruth, ontology: Ontology | None = None) -> list[str]:
    """Labels of the tumour classes present, largest first."""
    organ = organ_of(t, ontology)
    tumour = {c.label for c in organ.tumour_classes}
    return [lab for f, lab in sorted(((f, lab) for lab, f in t.fractions.items() if lab in tumour), reverse=True) if f]


def background_tissues(t: PartTruth, ontology: Ontology | None = None, min_fraction: float = NAMED_FRACTION) -> list:
    """Labels of the non-tumour classes a report names: those covering >= 10 % of the tissue, largest first."""
    organ = organ_of(t, ontology)
    tissue = {c.label for c in organ.tissue_classes}
    keep = [(f, lab) for lab, f in t.fractions.items() if lab in tissue and f >= min_fraction]
    return [lab for f, lab in sorted(keep, reverse=True)]


def truth_tissues(t: PartTruth, ontology: Ontology | None = None) -> list[str]:
    """Labels a correct 'which tissues' answer names: the tumour classes when present, then the background."""
    return (tumour_labels(t, ontology) if t.tumour_fraction > 0 else []) + background_tissues(t, ontology)


def subtypes(t: PartTruth, ontology: Ontology | None = None) -> list[str] | None:
    """Names of the tumour classes present, for an organ with several (a subtype task); None otherwise."""
    organ = organ_of(t, ontology)
    if len(organ.tumour_classes) < 2:
        return None
    names = by_label(organ)
    return [names[lab].name for lab in tumour_labels(t, ontology)]


def closed_questions() -> dict[str, list[str]]:
    """The closed questions of the demo corpus ({kind: wordings}; ``resources/demo_writer.json``); the first
    wording of each kind is the one the evaluation asks. ``class`` wordings hold ``{class}``."""
    from napari_pathalign.reporting.answering import trained_questions

    return trained_questions()
