"""Fit a model's measurement error on slides with known composition: ``pathalign calibrate MODEL DATA``.

The claim checker reads a measured tissue share against a logit-normal error:
true logit ~ Normal(slope * measured logit + intercept, sigma), one line for the tumour share, one
for tissues and one per tissue class (``reporting/claims.py: Calibration``). The embedded model's
lines ship in ``resources/claim_calibration.json``; a model trained on a department's own slides
gets its own here, from its validation slides, and keeps them beside its weights
(``claim_calibration.json`` in the checkpoint folder), where the checker finds them.

DATA is a folder with ``slides.csv``: a ``slide`` path (relative to the folder) and ``fractions``, a
JSON object of class label -> share of the tissue (the demo slides' format). Each slide's organ is
the ontology organ whose class labels hold all of the slide's.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from napari_pathalign.core.progress import Progress


def fit_line(xy: list[tuple[float, float]]) -> dict:
    """Least squares of the true logit on the measured logit, with the residual sigma. With a slope of
    zero or below (the measurement says nothing, on these slides) the class's base rate instead."""
    from napari_pathalign.reporting.claims import logit

    if len(xy) < 3:
        raise ValueError(
            f"a calibration line needs at least 3 slides, got {len(xy)} (for the tumour share: slides with tumour); "
            "add slides to the data"
        )
    x = np.array([logit(a) for a, _ in xy])
    y = np.array([logit(b) for _, b in xy])
    slope, intercept = np.polyfit(x, y, 1)
    sigma = float(np.std(y - (slope * x + intercept), ddof=2)) if len(xy) > 3 else float(np.std(y, ddof=1))
    if slope <= 0 or not math.isfinite(sigma) or sigma <= 0 or np.ptp(x) < 1e-6:  # no signal in the measurement
        slope, intercept, sigma = 0.0, float(y.mean()), float(np.std(y, ddof=1))
    sigma = max(sigma, 0.05)  # a near-exact fit on a few slides is no zero error
    return {
        "slope": round(float(slope), 4),
        "intercept": round(float(intercept), 4),
        "sigma": round(sigma, 4),
        "pairs": len(xy),
    }


def fit_errors(slides: list[dict]) -> dict:
    """{'tumour', 'tissue', 'tissue_by_class'} lines from [{'measured': {label: share}, 'truth': {label:
    share}, 'tumour': [tumour labels]}, ...] of one measurement method."""
    pairs: dict[str, list] = {"tumour": [], "tissue": []}
    by_class: dict[str, list] = {}
    for s in slides:
        tumour_truth = sum(float(s["truth"].get(c, 0.0)) for c in s["tumour"])
        if tumour_truth > 0:
            pairs["tumour"].append((sum(s["measured"][c] for c in s["tumour"]), tumour_truth))
        for label, value in s["measured"].items():
            if label not in s["tumour"]:
                pair = (value, float(s["truth"].get(label, 0.0)))
                pairs["tissue"].append(pair)
                by_class.setdefault(label, []).append(pair)
    fit = {kind: fit_line(xy) for kind, xy in pairs.items()}
    fit["tissue_by_class"] = {c: fit_line(xy) for c, xy in sorted(by_class.items()) if len(xy) >= 3}
    return fit


def read_slides(data: Path) -> list[dict]:
    """Rows of ``data/slides.csv`` with their fractions parsed; ValueError saying what is expected."""
    table = Path(data) / "slides.csv"
    if not table.is_file():
        raise FileNotFoundError(
            f"{table} does not exist; calibration data is a folder with slides.csv (columns slide, fractions: a "
            "JSON object of class label -> share of the tissue)"
        )
    with open(table, newline="", encoding="utf-8-sig") as fh:  # utf-8-sig: a spreadsheet's byte-order mark
        rows = list(csv.DictReader(fh))
    for k, r in enumerate(rows):
        if "slide" not in r or "fractions" not in r:
            raise ValueError(f"{table}: row {k + 1} lacks 'slide' or 'fractions'; columns are {list(r)}")
        try:
            r["fractions"] = {c: float(v) for c, v in json.loads(r["fractions"]).items()}
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise ValueError(f"{table}: row {k + 1}: fractions is not a JSON object of label -> share") from None
    if len(rows) < 3:
        raise ValueError(f"{table} lists {len(rows)} slides; calibration needs at least 3 (a few dozen is better)")
    return rows


def organ_of(ontology, fractions: dict) -> str:
    """The ontology organ whose class labels hold all of a slide's labels."""
    labels = {c for c, v in fractions.items() if v > 0}
    for o in ontology.organs:
        if labels <= {c.label for c in o.classes}:
            return o.name
    raise ValueError(
        f"no organ of the ontology '{ontology.name}' has the classes {sorted(labels)}; each organ's class "
        "labels must name the classes of slides.csv"
    )


def iter_calibrate(data: Path, analysis_of) -> Iterator[Progress]:
    """Generator of progress; returns the calibration document ({method: lines, 'provenance'}).

    ``analysis_of(slide_path)`` gives a prepared ``SlideAnalysis`` of one slide (with the model to calibrate).
    """
    from napari_pathalign.engine.library_build import model_identity
    from napari_pathalign.reporting.claims import ClaimChecker

    rows = read_slides(data)
    measured: dict[str, list[dict]] = {}
    identity = None
    for k, r in enumerate(rows):
        yield Progress("calibration", k, len(rows), f"Measuring {r['slide']} ({k + 1}/{len(rows)})")
        analysis = analysis_of(Path(data) / r["slide"])
        onto = analysis.ontology
        organ = organ_of(onto, r["fractions"])
        o = onto.organ(organ)
        checker = ClaimChecker(analysis, calibration={})
        methods = ["zero-shot"] + (["head"] if checker.method_for(organ) == "head" else [])
        for method in methods:
            names = checker.measure(organ, method)  # class name -> measured share
            measured.setdefault(method, []).append(
                {
                    "measured": {c.label: names[c.name] for c in o.classes},
                    "truth": r["fractions"],
                    "tumour": [c.label for c in o.tumour_classes],
                }
            )
        identity = identity or model_identity(analysis.models["generation"], analysis.encoder)
    yield Progress("calibration", len(rows), len(rows), "Fitting the measurement errors ...")
    doc = {method: fit_errors(slides) for method, slides in measured.items()}
    doc["provenance"] = {
        "command": "pathalign calibrate",
        "data": str(Path(data).resolve()),
        "slides": len(rows),
        "model": identity["model"],
        "model_hash": identity["model_hash"],
    }
    return doc
