"""Pathology-style reports written from a demo slide's known composition, in varied wording.

The writer owns no vocabulary: its phrases are those of a report ontology (``resources/
embedded_ontology.json``: class phrases, negative phrases, extent buckets), and its specimen lines,
sentence frames and closed questions come from ``resources/demo_writer.json``. The clinical-fact
parser of the evaluation reads drafts back with the same ontology, so every written phrase maps to
one fact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.eval.truth import PartTruth, background_tissues, by_label, organ_of, subtypes, tumour_labels
from napari_pathalign.reporting.ontology import Ontology, load_ontology

WRITER_FILE = RESOURCES / "demo_writer.json"


@dataclass(frozen=True)
class Writer:
    """A writer configuration (``demo_writer.json``) and the ontology it words reports with."""

    config: dict
    ontology: Ontology

    def source(self, source: str) -> dict:
        try:
            return self.config["sources"][source]
        except KeyError:
            raise ValueError(
                f"the demo writer has no wording for tile source {source!r}; it knows {sorted(self.config['sources'])}"
            ) from None


@lru_cache(maxsize=4)
def load_writer(path: str | None = None) -> Writer:
    """The writer configured by ``path`` (default ``resources/demo_writer.json``) with its ontology file."""
    path = Path(path) if path else WRITER_FILE
    config = json.loads(path.read_text(encoding="utf-8"))
    return Writer(config, load_ontology(path.parent / config["ontology"]))


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _written_extent_phrases(bucket) -> list[str]:
    """A bucket's phrases that read as a noun phrase ('a small focus'); percentages are written as numbers."""
    return [p for p in bucket.phrases if not re.search(r"\d", p)] or list(bucket.phrases)


def write_part(t: PartTruth, rng: np.random.Generator, writer: Writer | None = None) -> str:
    """One part's text: specimen, diagnosis, extent, background tissue; wording drawn at random."""
    w = writer or load_writer()
    onto = w.ontology
    spec = w.source(t.source)
    organ = organ_of(t, onto)
    classes = by_label(organ)
    specimen = f"{spec['specimen']}, {_pick(spec['sites'], rng)}, {_pick(spec['procedures'], rng)}:"
    b = onto.bucket(t.tumour_fraction)
    if b is None:
        diagnosis = _pick(list(organ.negative_phrases), rng).capitalize() + "."
        extent = ""
    else:
        tumour = _listed([_pick(list(classes[lab].phrases), rng) for lab in tumour_labels(t, onto)])
        diagnosis = _pick(spec["diagnosis"], rng).format(tumour=tumour)
        diagnosis = diagnosis[:1].upper() + diagnosis[1:]
        bucket = next(x for x in onto.extent if x.name == b)
        extent = " " + _pick(w.config["extent"], rng).format(
            extent=_pick(_written_extent_phrases(bucket), rng), percent=round(t.tumour_fraction * 100)
        )
    tissues = [_pick(list(classes[lab].phrases), rng) for lab in background_tissues(t, onto)]
    background = " " + _pick(w.config["background"], rng).format(tissues=_listed(tissues)) if tissues else ""
    return f"{specimen} {diagnosis}{extent}{background}"


def write_report(parts: list[tuple[str, PartTruth]], rng: np.random.Generator, writer: Writer | None = None) -> str:
    """A case report: one part without markers, or lettered parts under a diagnosis header."""
    if len(parts) == 1:
        return "FINAL DIAGNOSIS:\n" + write_part(parts[0][1], rng, writer)
    style = int(rng.integers(3))
    lines = ["FINAL DIAGNOSIS:"]
    for label, truth in parts:
        marker = {0: f"{label}.", 1: f"{label})", 2: f"PART {ord(label) - ord('A') + 1}:"}[style]
        lines.append(f"{marker} {write_part(truth, rng, writer)}")
    return "\n".join(lines)


def answers(t: PartTruth, writer: Writer | None = None) -> dict[str, str]:
    """Canonical answers to the closed questions: tumour, tissues, extent, one ``class:<name>`` yes/no per
    tumour class of the organ, and for an organ with several tumour classes, the subtype."""
    w = writer or load_writer()
    onto, said = w.ontology, w.config["answers"]
    organ = organ_of(t, onto)
    classes = by_label(organ)
    present = tumour_labels(t, onto) if t.tumour_fraction > 0 else []
    names = [classes[lab].name for lab in present] + [classes[lab].phrases[0] for lab in background_tissues(t, onto)]
    listed = _listed(names) if names else said["no_tumour"].rstrip(".")
    out = {
        "tumour": said["yes"] if t.tumour_fraction > 0 else said["no"],
        "tissues": listed[:1].upper() + listed[1:] + ".",
        "extent": said["extent"][onto.bucket(t.tumour_fraction) or "none"],
    }
    named = {classes[lab].name for lab in present}
    for c in organ.tumour_classes:
        out[f"class:{c.name}"] = said["yes"] if c.name in named else said["no"]
    kinds = subtypes(t, onto)
    if kinds is not None:
        sub = _listed(kinds) if kinds else said["no_tumour"].rstrip(".")
        out["subtype"] = sub[:1].upper() + sub[1:] + "."
    return out


def questions(key: str, writer: Writer | None = None) -> list[str]:
    """The wordings of a closed question (``answers`` key); a ``class:<name>`` key fills in the class."""
    qs = (writer or load_writer()).config["questions"]
    if key.startswith("class:"):
        return [q.format(**{"class": key.split(":", 1)[1]}) for q in qs["class"]]
    return list(qs[key])
