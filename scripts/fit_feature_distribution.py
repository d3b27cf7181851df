"""Fit the embedded model's feature distribution (its in-distribution score) and measure it.

    python scripts/fit_feature_distribution.py --tiles ../shared/data/tiles --work runs/distribution [--evaluate]

Steps (the slides and their features are kept in --work and reused):
  1. slides     the recipe's first --slides TRAIN demo slides (``make_demo_data`` with the same seed,
                train split only: the same slides the embedded model was trained on)
  2. features   each slide embedded by the shipped "embedded" encoder with ``GridConfig()``: the
                patches the model sees (224 px at 0.5 µm/px, straddling the source tiles)
  3. fit        cases split 2:1 (every third case held out): the Gaussian is fitted on the patches
                of the first part, the reference distance and the warning threshold (0.99 quantile
                of slide scores) come from the held-out part; no test slide is used
  4. write      --out (resources/embedded_feature_distribution.json) with the fit's provenance
  --evaluate    scores the held-out test demo slides, the shipped demo lymph node and the real
                slides in ../shared/data/wsi, prints them with the AUC, and stores the numbers in
                the file's provenance ("measured"). Slides without microns-per-pixel are listed but
                kept out of the AUC: their patches are at an unknown scale.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TRAINING_DATA = "the model's training tissue (lymph node from PatchCamelyon, colorectal from Kather 2016)"
REAL_SLIDES = [  # (group, path): CMU-1 is a skin biopsy, in every container we read
    ("real: CMU-1 skin", SHARED / "wsi" / "CMU-1-Small-Region.svs"),
    ("real: CMU-1 skin", SHARED / "wsi" / "CMU-1-Small-Region.pyramid.generic.tif"),
    ("real: CMU-1 skin", SHARED / "wsi" / "CMU-1-Small-Region.pyramid.ome.tif"),
    ("real: CMU-1 skin", SHARED / "wsi" / "CMU-1-Small-Region-dicom"),
    ("real: CMU-1 skin", ROOT / "resources" / "CMU-1-Small-Region.svs"),
    ("real: TCGA (no mpp)", SHARED / "wsi" / "tcga-cr-7395-01a-01-ts1.svs"),
]


def embed_all(paths: list[Path], cache: Path, encoder) -> dict[Path, object]:
    """``SlideFeatures`` per slide path, cached in ``cache``."""
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide

    out = {}
    for i, path in enumerate(paths):
        out[path] = embed_slide(open_slide(path), encoder, GridConfig(), cache_dir=cache)
        if len(paths) > 1 and ((i + 1) % 20 == 0 or i + 1 == len(paths)):
            print(f"  embedded {i + 1}/{len(paths)}", flush=True)
    return out


def train_slides(args, work: Path) -> list[dict]:
    """Rows of the train split's slides.csv, building the slides when they are not there yet."""
    from napari_pathalign.demo.data import make_demo_data

    table = work / "demo" / "train" / "slides.csv"
    rows = list(csv.DictReader(open(table))) if table.exists() else []
    if len(rows) != args.slides:
        print(f"writing {args.slides} train demo slides (seed {args.seed}) to {work / 'demo'}")
        make_demo_data(
            Path(args.tiles), work / "demo", slides=args.slides, seed=args.seed, splits=("train",), progress=False
        )
        rows = list(csv.DictReader(open(table)))
    return rows


def fit(args, work: Path, encoder):
    from napari_pathalign.models.distribution import FeatureDistribution

    rows = train_slides(args, work)
    feats = embed_all([work / "demo" / "train" / r["slide"] for r in rows], work / "features", encoder)
    cases = sorted({r["case"] for r in rows})
    held_out = set(cases[2::3])  # every third case: whole cases, so no part of one case is on both sides
    fit_x = [feats[work / "demo" / "train" / r["slide"]].features for r in rows if r["case"] not in held_out]
    cal_x = [feats[work / "demo" / "train" / r["slide"]].features for r in rows if r["case"] in held_out]
    provenance = {
        "data": (
            f"train-split demo slides from {os.path.relpath(args.tiles, ROOT)} (make_demo_data(slides={args.slides}, "
            f"seed={args.seed}, splits=('train',))): PatchCamelyon train/ and Kather 2016 train-split source "
            "images, the tiles the embedded model was trained on"
        ),
        "grid": "GridConfig(): 224-px patches at 0.5 um/px, tissue >= 0.5",
        "seed": args.seed,
        "fit_slides": len(fit_x),
        "split": "cases sorted by name; every third case held out for calibration",
        "fitted": time.strftime("%Y-%m-%d"),
    }
    dist = FeatureDistribution.fit(
        np.concatenate(fit_x),
        cal_x,
        quantile=args.quantile,
        encoder=encoder.name,
        weights_hash=encoder.weights_hash,
        training_data=TRAINING_DATA,
        provenance=provenance,
    )
    print(
        (
            f"fitted on {dist.provenance['fit_patches']} patches of {len(fit_x)} slides; reference distance "
            f"{dist.reference:.2f}, threshold {dist.threshold:+.3f} ({args.quantile} quantile of {len(cal_x)} "
            "held-out training slides)"
        )
    )
    return dist


def evaluate(dist, args, work: Path, encoder) -> dict:
    from sklearn.metrics import roc_auc_score

    from napari_pathalign.io import open_slide

    test = sorted(Path(args.test_slides).glob("*.tif"))
    groups = (
        [("demo test (held out)", p) for p in test]
        + [("demo lymph node (resources)", ROOT / "resources" / "demo-lymph-node.tif")]
        + [(g, p) for g, p in REAL_SLIDES if p.exists()]
    )
    caches = {
        p: (Path(args.test_slides).parent / "features" if p in test else work / "features-eval") for _, p in groups
    }
    scored = []
    for group, path in groups:
        feats = embed_all([path], caches[path], encoder)[path]
        mpp = open_slide(path).mpp
        result = dist.slide_score(feats) if len(feats.features) else None
        scored.append(
            {
                "group": group,
                "slide": path.name,
                "mpp": mpp,
                "patches": len(feats.features),
                "score": None if result is None else round(result.score, 4),
                "warn": None if result is None else result.warn,
            }
        )
    print(f"\n{'group':30s} {'slide':44s} {'mpp':>6s} {'patches':>7s} {'score':>7s} warn")
    for r in scored:
        print(
            (
                f"{r['group']:30s} {r['slide'][:44]:44s} {str(r['mpp']):>6s} "
                f"{r['patches']:7d} {r['score'] if r['score'] is not None else float('nan'):+7.3f} "
                f"{r['warn']}"
            )
        )
    inside = [r["score"] for r in scored if r["group"].startswith("demo") and r["score"] is not None]
    outside = [
        r["score"] for r in scored if r["group"].startswith("real") and r["mpp"] is not None and r["score"] is not None
    ]
    auc = float(roc_auc_score([0] * len(inside) + [1] * len(outside), inside + outside)) if inside and outside else None
    summary = {}
    for group in dict.fromkeys(r["group"] for r in scored):
        s = [r for r in scored if r["group"] == group and r["score"] is not None]
        summary[group] = {
            "slides": len(s),
            "median": round(float(np.median([r["score"] for r in s])), 4),
            "max": round(max(r["score"] for r in s), 4),
            "min": round(min(r["score"] for r in s), 4),
            "warn": sum(r["warn"] for r in s),
        }
    measured = {
        "threshold": round(dist.threshold, 4),
        "auc_demo_vs_real": auc,
        "auc_note": (
            "held-out demo slides (test split + resources/demo-lymph-node.tif) vs real slides with mpp "
            "(the CMU-1 skin biopsy in 5 containers: one tissue, not 5 independent slides)"
        ),
        "groups": summary,
        "no_mpp": (
            "tcga-cr-7395-01a-01-ts1.svs has no mpp: patched in level-0 pixels at an unknown scale, listed "
            "but not in the AUC"
        ),
        "measured": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(measured, indent=1))
    return measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", default=str(SHARED / "tiles"), help="PCam + Kather tiles (../shared/data/tiles)")
    ap.add_argument(
        "--work", default=str(ROOT / "runs" / "distribution"), help="where the train slides and features are kept"
    )
    ap.add_argument(
        "--slides", type=int, default=360, help="train demo slides (the recipe's 360: the same slides, same seed)"
    )
    ap.add_argument("--seed", type=int, default=0, help="the recipe's seed (demo slides and the Kather split)")
    ap.add_argument(
        "--quantile", type=float, default=0.99, help="threshold: this quantile of held-out training slides' scores"
    )
    ap.add_argument("--out", default=str(ROOT / "resources" / "embedded_feature_distribution.json"))
    ap.add_argument(
        "--evaluate", action="store_true", help="score the test demo slides and the real slides, store the numbers"
    )
    ap.add_argument(
        "--test-slides", default=str(ROOT / "demo-data" / "test" / "slides"), help="held-out test demo slides (.tif)"
    )
    args = ap.parse_args()

    from napari_pathalign.models.encoders import load_patch_encoder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    encoder = load_patch_encoder("embedded", device="cpu")
    dist = fit(args, work, encoder)
    if args.evaluate:
        dist.provenance["measured"] = evaluate(dist, args, work, encoder)
    size = dist.save(args.out).stat().st_size
    print(f"wrote {args.out} ({size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
