"""Retrieval quality of a slide library on held-out demo slides (SISH / Yottixel's protocol).

- Leave-one-out majority vote @k: each slide queries a library of all the others; the most common
  label among its top k hits is its predicted tumour call / dominant tissue.
- Text -> slide precision @k: for each class phrase, the share of the top k slides that hold the
  class (tumour: tumour present, of the phrase's organ; a tissue: at least 10 % of the tissue;
  "no tumour identified": tumour absent).
Both with 95 % bootstrap intervals (over slides, over phrases).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from napari_pathalign.eval.bootstrap import bootstrap_ci
from napari_pathalign.eval.truth import organ_of, subtypes
from napari_pathalign.reporting.ontology import load_ontology

PRESENT = 0.10  # a tissue "is on" a slide when it covers at least this share (the reports' threshold)


def phrase_relevance(rows: list[dict], truths) -> dict[str, np.ndarray]:
    """Class phrase -> (S,) bool: the slides a text search for it should return (phrases from the ontology:
    each tumour class's first phrase, the first negative phrase, each tissue's first phrase)."""
    onto = load_ontology()
    organs = [organ_of(t, onto) for t in truths]
    out = {}
    for organ in {o.name: o for o in organs}.values():
        mine = np.array([o.name == organ.name for o in organs])
        several = len(organ.tumour_classes) > 1
        for c in organ.tumour_classes:
            if several:  # a subtype's phrase finds the slides with that subtype
                rel = [bool(m) and c.name in (subtypes(t, onto) or ()) for m, t in zip(mine, truths)]
            else:
                rel = [bool(m) and t.tumour_fraction > 0 for m, t in zip(mine, truths)]
            out[c.phrases[0]] = np.array(rel)
        for c in organ.tissue_classes:
            rel = np.array([bool(m) and t.fractions.get(c.label, 0.0) >= PRESENT for m, t in zip(mine, truths)])
            if rel.any():
                out[c.phrases[0]] = rel
    negative = next((o.negative_phrases[0] for o in organs if o.negative_phrases), None)
    if negative:
        out[negative] = np.array([t.tumour_fraction == 0 for t in truths])
    return out


def evaluate_library(
    model, encoder, data: Path, k: int = 5, features_dir: Path | None = None, progress: bool = True
) -> dict:
    """Build a library of the split's slides, then leave-one-out majority vote and text precision."""
    from tqdm import tqdm

    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.library_build import model_identity, slide_record
    from napari_pathalign.engine.similar import text_vector
    from napari_pathalign.eval.evaluate import read_truth
    from napari_pathalign.index import Library

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k!r}")
    data = Path(data)
    rows, truths, texts = read_truth(data)
    if len(rows) < k + 1:
        raise ValueError(f"{data} has {len(rows)} slides; leave-one-out @{k} needs at least {k + 1}")
    tumour = ["tumour" if t.tumour_fraction > 0 else "no tumour" for t in truths]
    dominant = [max(t.fractions, key=t.fractions.get) for t in truths]
    with tempfile.TemporaryDirectory(prefix="pathalign-eval-library-") as tmp:
        lib = Library.create(Path(tmp) / "lib", index_type="flat", **model_identity(model, encoder))
        ids, vectors = [], []
        with lib.batch():
            for r, text, call in tqdm(
                list(zip(rows, texts, tumour)), desc="library", unit="slide", disable=not progress
            ):
                record, _ = slide_record(
                    data / r["slide"],
                    model,
                    encoder,
                    GridConfig(),
                    features_dir or data / "features",
                    {"report": text, "label": call, "site": r["source"]},
                )
                ids.append(lib.add([record])[0])
                vectors.append(record.vector)
        row_of = {i: n for n, i in enumerate(ids)}
        vote_tumour, vote_dominant = [], []
        for n, v in enumerate(vectors):
            hits = [h for h in lib.search(v, k=k + 1) if h.id != ids[n]][:k]
            others = [row_of[h.id] for h in hits]
            vote_tumour.append(Counter(tumour[o] for o in others).most_common(1)[0][0] == tumour[n])
            vote_dominant.append(Counter(dominant[o] for o in others).most_common(1)[0][0] == dominant[n])
        precision = {}
        for phrase, relevant in phrase_relevance(rows, truths).items():
            hits = lib.search(text_vector(model, phrase), k=k)
            precision[phrase] = float(np.mean([relevant[row_of[h.id]] for h in hits])) if hits else 0.0
        lib.close()
    mean = lambda x: float(np.mean(x))  # noqa: E731
    p = np.array(list(precision.values()))
    metrics = {
        "slides": len(rows),
        f"majority_vote_tumour_at{k}": mean(vote_tumour),
        f"majority_vote_dominant_at{k}": mean(vote_dominant),
        f"text_to_slide_precision_at{k}": mean(p),
        "ci95": {
            f"majority_vote_tumour_at{k}": bootstrap_ci(mean, {"x": np.array(vote_tumour)}),
            f"majority_vote_dominant_at{k}": bootstrap_ci(mean, {"x": np.array(vote_dominant)}),
            f"text_to_slide_precision_at{k}": bootstrap_ci(mean, {"x": p}),
        },
    }
    metrics.update({f"precision_at{k}[{phrase}]": v for phrase, v in precision.items()})
    return metrics
