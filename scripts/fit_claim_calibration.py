"""Fit the measurement error of the claim checker's measured fractions (``pipeline/claims.py``).

    python scripts/fit_claim_calibration.py --tiles ../shared/data/tiles --work runs/claims

Steps (slides and features are kept in --work and reused):
  1. slides     --slides calibration demo slides from the TRAIN tiles with their own seed
                (``make_demo_data(..., seed=--seed, splits=("train",))``): new compositions of the
                training tissue; no test slide is used
  2. measure    each slide analysed with the shipped models; the tumour fraction (organ's tumour
                class) and each tissue class of the organ's zero-shot set, measured as
                ``ClaimChecker.fractions`` does
  3. fit        per kind, least squares of the true logit on the measured logit (fractions clipped
                to [0.005, 0.995]); sigma is the residual standard deviation. Tumour: slides with
                tumour only (an extent claim is read given tumour). Tissue: every class of the
                slide's organ, absent ones included (naming an absent tissue is the error to catch)
  4. write      --out (resources/claim_calibration.json) with the fit's provenance
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=Path, default=ROOT.parent / "shared" / "data" / "tiles")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "claims")
    ap.add_argument("--slides", type=int, default=48)
    ap.add_argument("--seed", type=int, default=7, help="not the recipe's seed (0): new slides")
    ap.add_argument("--out", type=Path, default=ROOT / "resources" / "claim_calibration.json")
    args = ap.parse_args()

    from tqdm import tqdm

    from napari_pathalign.io import open_slide
    from napari_pathalign.pipeline.analysis import SlideAnalysis
    from napari_pathalign.pipeline.claims import TISSUE_MEASURE, TUMOUR_MEASURE, ClaimChecker, _logit
    from napari_pathalign.train.demo_data import make_demo_data
    from napari_pathalign.train.demo_reports import TUMOUR_CLASSES

    folder = args.work / "train"
    if not (folder / "slides.csv").is_file():
        make_demo_data(args.tiles, args.work, slides=args.slides, seed=args.seed, splits=("train",))
    with open(folder / "slides.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    organ_of = {"pcam": "lymph node tissue", "kather": "colorectal tissue"}
    pairs: dict[str, list[tuple[float, float]]] = {"tumour": [], "tissue": []}
    for r in tqdm(rows, desc="measure", unit="slide"):
        a = SlideAnalysis(open_slide(folder / r["slide"]), cache_dir=folder / "features")
        for _ in a.iter_prepare():
            pass
        organ = organ_of[r["source"]]
        measured = ClaimChecker(a, calibration={}).fractions(organ)
        truth = json.loads(r["fractions"])
        if float(r["tumour_fraction"]) > 0:
            pairs["tumour"].append((measured[TUMOUR_MEASURE[organ]], float(r["tumour_fraction"])))
        for cls, (set_name, zs_class) in TISSUE_MEASURE.items():
            if set_name == organ and cls != TUMOUR_CLASSES[r["source"]]:
                pairs["tissue"].append((measured[zs_class], float(truth.get(cls, 0.0))))
    fit = {}
    for kind, xy in pairs.items():
        x = np.array([_logit(m) for m, _ in xy])
        y = np.array([_logit(t) for _, t in xy])
        slope, intercept = np.polyfit(x, y, 1)
        sigma = float(np.std(y - (slope * x + intercept), ddof=2))
        fit[kind] = {"slope": round(float(slope), 4), "intercept": round(float(intercept), 4), "sigma": round(sigma, 4), "pairs": len(xy)}
        print(f"{kind}: true logit = {slope:.3f} * measured logit + {intercept:.3f}, sigma {sigma:.3f} ({len(xy)} pairs)")
    fit["provenance"] = {
        "script": "scripts/fit_claim_calibration.py",
        "slides": len(rows),
        "seed": args.seed,
        "tiles": "train split of " + str(args.tiles.name),
        "models": "embedded (generation, measures) and embedded-r",
        "date": time.strftime("%Y-%m-%d"),
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(fit, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
