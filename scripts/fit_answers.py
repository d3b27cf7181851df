"""Fit how chat decides a presence question (resources/answer_calibration.json) and measure chat.

    python scripts/fit_answers.py --demo runs/embedded3/demo [--evaluate] [--model embedded]

--demo is a `pathalign demo-data` folder of the recipe (test/ with slides.csv and class maps; the
training script's runs/<name>/demo, whose features/ cache is reused). Nothing here downloads.

The test split is halved by case (the same halves as scripts/fit_in_scope.py): the first half is the
validation split. On it, every presence question a slide can be asked (any tumour, each tumour class
of the ontology) gets the model's two readings (its diagnosis call, its yes/no answer), and a logistic
regression on their logits gives the calibrated probability of 'yes', so that 'yes' is not favoured.
--evaluate asks the question bank's held-out wordings on the second half only (eval/chat_eval.py)
and stores the figures in the file ("measured").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def halves(rows: list[dict]) -> tuple[set, set]:
    cases = sorted({r["case"] for r in rows})
    return set(cases[0::2]), set(cases[1::2])


def analyses_of(demo: Path, rows, keep: set, model, retrieval, encoder):
    from tqdm import tqdm

    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.eval.evaluate import prepared_analysis

    out = []
    for r in tqdm([r for r in rows if r["case"] in keep], desc="slides", unit="slide"):
        out.append(
            prepared_analysis(
                demo / "test" / r["slide"], model, retrieval, encoder, GridConfig(max_patches=2048), demo / "features"
            )
        )
    return out


def fit_subtype_weights(seen: list) -> dict:
    """Weights of the subtype readings (a grid over the simplex in quarters) with the best validation accuracy;
    ties go to the higher mean log-probability of the true subtype. ``seen``: [(true index, {source: (C,)})]."""
    import itertools

    from napari_pathalign.reporting.answering import SUBTYPE_SOURCES

    if not seen:
        return {}
    best = None
    for combo in itertools.product(range(5), repeat=len(SUBTYPE_SOURCES)):
        if sum(combo) != 4:
            continue
        w = {k: c / 4 for k, c in zip(SUBTYPE_SOURCES, combo)}
        right, loglik = 0, 0.0
        for truth, readings in seen:
            mix = sum(w[k] * readings[k] for k in SUBTYPE_SOURCES)
            mix = mix / mix.sum()
            right += int(np.argmax(mix) == truth)
            loglik += float(np.log(mix[truth] + 1e-9))
        key = (right, loglik)
        if best is None or key > best[0]:
            best = (key, w)
    (right, loglik), w = best
    return {"weights": w, "validation_slides": len(seen), "validation_accuracy": right / len(seen)}


def organ_label(organ, name: str) -> str:
    return next(c.label for c in organ.classes if c.name == name)


def main() -> int:
    from sklearn.linear_model import LogisticRegression

    from napari_pathalign.core.atomic import atomic_write_text
    from napari_pathalign.engine.library_build import model_identity
    from napari_pathalign.eval.chat_eval import folder_id
    from napari_pathalign.eval.evaluate import read_truth
    from napari_pathalign.eval.truth import organ_of, subtypes
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign
    from napari_pathalign.reporting.answering import (
        CALIBRATION_FILE,
        extent_readings,
        presence_readings,
        subtype_readings,
        use_answer_calibration,
    )
    from napari_pathalign.reporting.claims import logit
    from napari_pathalign.reporting.ontology import load_ontology
    from napari_pathalign.reporting.questions import ANY_TUMOUR, Intent

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", required=True)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--retrieval-model", default="embedded-r")
    ap.add_argument("--evaluate", action="store_true")
    args = ap.parse_args()
    start = time.time()
    demo = Path(args.demo)
    model = PathAlign.load(args.model, device="cpu")
    retrieval = PathAlign.load(args.retrieval_model, device="cpu")
    encoder = load_patch_encoder(model.cfg.patch_encoder, None, "cpu")
    rows, truths, _ = read_truth(demo / "test")
    for r, t in zip(rows, truths):
        r["truth"] = t
    validation, measured = halves(rows)
    onto = load_ontology()
    targets = [ANY_TUMOUR] + list(dict.fromkeys(c.name for o in onto.organs for c in o.tumour_classes))
    x, y, extents, subtypes_seen = [], [], [], []
    val_rows = [r for r in rows if r["case"] in validation]
    val_analyses = analyses_of(demo, rows, validation, model, retrieval, encoder)
    for r, a in zip(val_rows, val_analyses):  # presence first: the extent and subtype readings use its fit
        t = r["truth"]
        organ = organ_of(t, onto)
        for target in targets:
            if target == ANY_TUMOUR:
                present = t.tumour_fraction > 0
            else:
                c = next((c for c in organ.tumour_classes if c.name == target), None)
                present = c is not None and t.fractions.get(c.label, 0) > 0
            p_calls, p_yes = presence_readings(a, target)
            x.append([logit(p_calls), logit(p_yes)])
            y.append(int(present))
    x, y = np.array(x), np.array(y)
    fit = LogisticRegression(C=1.0).fit(x, y)
    p = fit.predict_proba(x)[:, 1]
    presence = {"coef": [float(v) for v in fit.coef_[0]], "intercept": float(fit.intercept_[0])}
    for r, a in zip(val_rows, val_analyses):
        # this run's presence fit, not whatever answer_calibration.json held before: the result must not depend
        # on an earlier run (a first fit for a new model read 'uncalibrated' presence, a second run the first's fit)
        use_answer_calibration(a, {"presence": presence, "n_slides": len(val_rows)})
        t = r["truth"]
        organ = organ_of(t, onto)
        kinds = subtypes(t, onto)
        if kinds is not None and len(kinds) == 1:  # one subtype on the slide: which one does each reading say?
            _, classes, readings = subtype_readings(a, Intent("subtype", ANY_TUMOUR, organ=organ.name), "")
            subtypes_seen.append((classes.index(kinds[0]), readings))
        for target in [ANY_TUMOUR] + [c.name for c in organ.tumour_classes]:
            share = t.tumour_fraction if target == ANY_TUMOUR else t.fractions.get(organ_label(organ, target), 0.0)
            got = extent_readings(a, Intent("extent", target, organ=organ.name), "")
            extents.append((got, onto.bucket(share) or "none"))
    weights = {}
    for w in (0.0, 0.25, 0.5, 0.75, 1.0):  # the extent answer: measured share vs the LM's own answer
        right = []
        for got, want in extents:
            lm = got["from_lm"] or {}
            mix = {b: (1 - w) * v + w * lm.get(b, 0.0) for b, v in got["from_map"].items()}
            right.append(max(mix, key=mix.get) == want)
        weights[w] = float(np.mean(right))
    lm_weight = max(weights, key=lambda w: (weights[w], -abs(w - 0.5)))
    subtype_fit = fit_subtype_weights(subtypes_seen)
    doc = {
        "about": "How chat decides 'is X present?' for the model with this weights hash: logistic regression on the "
        "logits of its diagnosis call and its yes/no answer, fitted on the validation half of the demo test split "
        "(scripts/fit_answers.py).",
        "model_hash": model_identity(model, encoder)["model_hash"],
        "presence": presence,
        "subtype": subtype_fit,
        "extent": {"lm_weight": lm_weight, "validation_accuracy_by_weight": {str(k): v for k, v in weights.items()}},
        "n_slides": len(val_rows),
        "n_questions": len(y),
        "fitted_cases": sorted(validation),
        "fitted_data_id": folder_id(demo / "test"),
        "validation_accuracy": float(((p >= 0.5) == y).mean()),
        "validation_yes_rate": {"predicted": float((p >= 0.5).mean()), "true": float(y.mean())},
    }
    print(json.dumps({k: v for k, v in doc.items() if k != "fitted_cases"}, indent=1))
    atomic_write_text(CALIBRATION_FILE, json.dumps(doc, indent=1) + "\n")
    if args.evaluate:
        from napari_pathalign.eval.chat_eval import chat_metrics
        from napari_pathalign.eval.class_maps import class_map_path, read_class_map

        test_rows = [r for r in rows if r["case"] in measured]
        analyses = analyses_of(demo, rows, measured, model, retrieval, encoder)
        maps = [
            read_class_map(class_map_path(demo / "test" / r["slide"]))
            if class_map_path(demo / "test" / r["slide"]).is_file()
            else None
            for r in test_rows
        ]
        metrics, ci = chat_metrics(analyses, [r["truth"] for r in test_rows], maps)
        metrics["ci95"] = ci
        print(json.dumps(metrics, indent=1))
        doc["measured"] = metrics
        CALIBRATION_FILE.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {CALIBRATION_FILE} in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
