"""Fit the embedded model's in-scope detector (resources/embedded_in_scope.json) and measure it.

    python scripts/fit_in_scope.py --demo runs/embedded3/demo [--evaluate]

--demo is a `pathalign demo-data` folder of the recipe (train/ and test/ with slides.csv; the
training script's runs/<name>/demo, whose features/ cache is reused). Nothing here downloads.

  1. fit         train-split slides by organ (lymph node, colon, lung: read from each slide's truth);
                 cases split 2:1 (every third case held out): one Gaussian per organ is fitted on the
                 first part, each organ's reference distance comes from the held-out part.
                 The slide threshold needs slides from *new sources* (held-out train cases reuse the fit's
                 source tiles and lie closer than a new patient's tissue does: colon test slides were
                 flagged 36 % with a threshold from them), so the test split is halved by case: the
                 threshold flags at most --false-flag of the first half ("threshold" cases), and every
                 figure below is measured on the second half only.
  2. write       --out with the fit's provenance
  --evaluate     scores the held-out test slides (in scope) and the real out-of-scope slides of
                 ../shared/data (eval/out_of_scope.py), prints each and the AUC with its bootstrap
                 CI, and stores the figures in the file's provenance ("measured").
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NAMES = {
    "lymph node": "lymph node (PatchCamelyon)",
    "colon": "colorectal tissue (Kather 2016)",
    "lung": "lung (LC25000)",
}


def rows_of(split: Path, organs=None) -> list[dict]:
    from napari_pathalign.eval.truth import PartTruth, organ_of

    with open(split / "slides.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["organ"] = organ_of(PartTruth(r["source"], json.loads(r["fractions"]), float(r["tumour_fraction"]))).name
    return [r for r in rows if organs is None or r["organ"] in organs]


def threshold_cases(rows: list[dict]) -> set[str]:
    """The test cases the threshold is chosen on: every other case, sorted by name (the rest measure it)."""
    return set(sorted({r["case"] for r in rows})[0::2])


def embed(paths, cache: Path, encoder, label: str) -> list:
    from tqdm import tqdm

    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide

    return [
        embed_slide(open_slide(p), encoder, GridConfig(max_patches=2048), cache_dir=cache)  # the recipe's grid
        for p in tqdm(paths, desc=label, unit="slide")
    ]


def fit(args, encoder):
    from napari_pathalign.models.in_scope import InScopeModel

    demo = Path(args.demo)
    rows = rows_of(demo / "train", args.organs)
    feats = embed([demo / "train" / r["slide"] for r in rows], demo / "features", encoder, "train slides")
    cases = sorted({r["case"] for r in rows})
    held = set(cases[2::3])  # whole cases, so no part of a case is on both sides
    test = rows_of(demo / "test", args.organs)
    half = threshold_cases(test)
    test_feats = embed([demo / "test" / r["slide"] for r in test], demo / "features", encoder, "test slides")
    threshold_x = [f.features for r, f in zip(test, test_feats) if r["case"] in half]
    fit_x: dict[str, list] = {}
    cal_x: dict[str, list] = {}
    for r, f in zip(rows, feats):
        (cal_x if r["case"] in held else fit_x).setdefault(r["organ"], []).append(f.features)
    provenance = {
        "data": f"train-split demo slides of {demo} (the slides the embedded model was trained on)",
        "grid": "GridConfig(): 224-px patches at 0.5 um/px, tissue >= 0.5",
        "fit_slides": {o: len(v) for o, v in fit_x.items()},
        "split": (
            "train cases sorted by name, every third held out for the organ references; the slide threshold "
            "from the test split's even-numbered cases (new source tiles), figures on its odd-numbered cases"
        ),
        "fitted": time.strftime("%Y-%m-%d"),
    }
    model = InScopeModel.fit(
        fit_x,
        cal_x,
        false_flag=args.false_flag,
        threshold_slides=threshold_x,
        encoder=encoder.name,
        weights_hash=encoder.weights_hash,
        training_data=", ".join(NAMES[o] for o in args.organs) + ", H&E",
        provenance=provenance,
    )
    print(
        f"fitted {', '.join(f'{o} ({len(v)} slides)' for o, v in fit_x.items())}; threshold {model.threshold:+.3f} "
        f"(flags {args.false_flag:.0%} of {model.provenance.get('threshold_slides')} test slides of the first half), "
        f"patch threshold {model.patch_threshold:+.3f}"
    )
    return model


def evaluate(model, args, encoder) -> dict:
    from napari_pathalign.eval.out_of_scope import detection_metrics, out_of_scope_slides

    demo = Path(args.demo)
    half = threshold_cases(rows_of(demo / "test", args.organs))
    rows = [r for r in rows_of(demo / "test", args.organs) if r["case"] not in half]  # unseen by the threshold
    unknown = [r for r in rows_of(demo / "test") if r["organ"] not in args.organs]  # real tissue it was not trained on
    inside = [
        model.score(f)
        for f in embed([demo / "test" / r["slide"] for r in rows], demo / "features", encoder, "test slides")
    ]
    ood = out_of_scope_slides(Path(args.data), demo / "out_of_scope")
    feats = embed([s.path for s in ood], demo / "features", encoder, "out-of-scope")
    empty = [o.source for o, f in zip(ood, feats) if len(f.features) == 0]
    if empty:
        print(f"no tissue patch at 0.5 um/px (left out): {', '.join(empty)}")
    ood, feats = zip(*[(o, f) for o, f in zip(ood, feats) if len(f.features)])
    outside = [model.score(f) for f in feats]
    if unknown:  # held-out test slides of an organ the model was not trained on: out of scope too
        sources = [demo / "test" / r["slide"] for r in unknown]
        ood = list(ood) + [
            type(ood[0])(p, f"held-out {r['organ']} (not trained on)", str(p)) for p, r in zip(sources, unknown)
        ]
        outside += [model.score(f) for f in embed(sources, demo / "features", encoder, "untrained organ")]
    print(f"\n{'slide':52s} {'patches':>7s} {'distance':>8s} {'p':>5s} flagged nearest")
    for name, s in [(r["slide"], s) for r, s in zip(rows, inside)] + [(o.source, s) for o, s in zip(ood, outside)]:
        print(f"{name[-52:]:52s} {s.n_patches:7d} {s.distance:+8.3f} {s.score:5.2f} {s.flagged!s:7s} {s.nearest_organ}")
    metrics, ci = detection_metrics(inside, outside, model.threshold)
    by_organ = {}
    for r, s in zip(rows, inside):
        by_organ.setdefault(r["organ"], []).append(s.flagged)
    metrics["false_flag_by_organ"] = {o: round(float(np.mean(v)), 4) for o, v in by_organ.items()}
    metrics["ci95"] = {k: v for k, v in ci.items() if v}
    metrics["measured"] = time.strftime("%Y-%m-%d")
    print(json.dumps(metrics, indent=1))
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--demo", default=str(ROOT / "runs" / "embedded3" / "demo"), help="demo-data folder (train/, test/)"
    )
    ap.add_argument("--data", default=str(SHARED), help="the shared data folder (out-of-scope slides)")
    ap.add_argument("--false-flag", type=float, default=0.02, help="share of held-out in-scope slides to flag")
    ap.add_argument("--out", default=str(ROOT / "resources" / "embedded_in_scope.json"))
    ap.add_argument(
        "--organs",
        nargs="+",
        default=["lymph node", "colon"],
        help="the organs the shipped model was trained on (in scope; the other organs' test slides are out of scope)",
    )
    ap.add_argument("--evaluate", action="store_true", help="measure on the test split and the out-of-scope slides")
    args = ap.parse_args()

    from napari_pathalign.models.encoders import load_patch_encoder

    encoder = load_patch_encoder("embedded", device="cpu")
    model = fit(args, encoder)
    if args.evaluate:
        model.provenance["measured"] = evaluate(model, args, encoder)
    size = model.save(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
