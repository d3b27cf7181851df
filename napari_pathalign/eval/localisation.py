"""Do the heatmaps point at the right tissue, and do they show what the model used?

- **Localisation**: per slide, the AUC of a heatmap's patch values against the patches that lie
  mostly (> 50% of their area) on a class's cells in the slide's ground-truth class map; averaged
  over the slides that hold both such patches and others, with a bootstrap interval over slides.
  Per-slide (not pooled) AUC because a heatmap is read one slide at a time.
- **Faithfulness** (a deletion test): removing the top 10% of patches by a heatmap from the slide
  must lower the slide's score for that text more than removing a random 10% (mean of 5 draws).
  Reported: the share of (slide, text) pairs where it does, and the mean drops of both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_pathalign.core.metrics import auc
from napari_pathalign.eval.bootstrap import bootstrap_ci
from napari_pathalign.reporting.vocabulary import TISSUE, TUMOUR_CLASSES, TUMOUR_NAME

MOSTLY = 0.5  # a patch "lies on" a class when more than this share of its area is that class
DELETE_FRACTION = 0.10  # share of patches removed by the deletion test
RANDOM_DRAWS = 5  # random deletions averaged per pair


def tumour_text(source: str) -> str:
    """The phrase a pathologist would type for the tumour of a demo source."""
    return TUMOUR_NAME[source]


def class_text(cls: str, source: str) -> str:
    return tumour_text(source) if cls == TUMOUR_CLASSES[source] else TISSUE[cls][0]


def slide_auc(values: np.ndarray, positive: np.ndarray) -> float | None:
    """AUC of values for positive patches vs the rest; None when one side is empty."""
    return auc(values, positive)


@dataclass
class DeletionResult:
    """One (slide, text) deletion test."""

    drop_top: float  # score(all patches) - score(without the top 10% by the heatmap)
    drop_random: float  # the same for a random 10%, mean of RANDOM_DRAWS draws

    @property
    def faithful(self) -> bool:
        return self.drop_top > self.drop_random


def deletion_test(analysis, heatmap, text: str, model: str = "retrieval", seed: int = 0) -> DeletionResult | None:
    """Score drop for ``text`` after removing the heatmap's top 10% vs a random 10% of patches."""
    n = len(heatmap)
    k = int(round(DELETE_FRACTION * n))
    if k < 1 or n - k < 1:
        return None
    full = analysis.text_score(text, model=model)
    top = set(heatmap.top_patches(k).tolist())
    drop_top = full - analysis.text_score(text, keep=np.array([i for i in range(n) if i not in top]), model=model)
    rng = np.random.default_rng(seed)
    drops = [
        full - analysis.text_score(text, keep=np.sort(rng.permutation(n)[k:]), model=model) for _ in range(RANDOM_DRAWS)
    ]
    return DeletionResult(float(drop_top), float(np.mean(drops)))


def localisation_metrics(
    analyses: list, class_maps: list, sources: list[str], progress: bool = True
) -> tuple[dict, dict]:
    """Localisation AUCs (text, text-weighted and plain attention, each class) and faithfulness."""
    from tqdm import tqdm

    from napari_pathalign.eval.class_maps import patch_class_fractions

    per: dict[str, list] = {}  # metric -> per-slide values (None: not defined on that slide)
    deletions: dict[str, list] = {"text": [], "attention": []}
    for a, cmap, source in tqdm(
        list(zip(analyses, class_maps, sources)), desc="localisation", unit="slide", disable=not progress
    ):
        f = a.features
        frac = patch_class_fractions(cmap, f.xy_level0, f.size_level0)  # (N, C)
        mostly = {c: frac[:, k] > MOSTLY for k, c in enumerate(cmap.classes)}
        tumour = TUMOUR_CLASSES[source]
        text = tumour_text(source)
        pos = mostly.get(tumour, np.zeros(len(frac), bool))
        maps = {
            "text": a.text_heatmap(text),
            "attention_text": a.attention_heatmap(text=text),
            "attention_mean": a.attention_heatmap(),
        }
        for name, h in maps.items():
            per.setdefault(f"localisation_tumour_auc_{name}", []).append(slide_auc(h.values, pos))
        for cls, is_cls in mostly.items():
            if cls != tumour:
                per.setdefault(f"localisation_auc_{cls}", []).append(
                    slide_auc(a.text_heatmap(class_text(cls, source)).values, is_cls)
                )
        if pos.any():
            deletions["text"].append(deletion_test(a, maps["text"], text, "generation"))
            deletions["attention"].append(deletion_test(a, maps["attention_text"], text, "generation"))
    metrics, ci = {}, {}
    for name, values in per.items():
        ok = np.array([v for v in values if v is not None], float)
        if len(ok):
            metrics[name] = float(ok.mean())
            metrics[name + "_slides"] = int(len(ok))
            ci[name] = bootstrap_ci(lambda x: float(np.mean(x)), {"x": ok})
    for name, results in deletions.items():
        ok = [r for r in results if r is not None]
        if ok:
            metrics[f"faithfulness_{name}_share"] = float(np.mean([r.faithful for r in ok]))
            metrics[f"faithfulness_{name}_drop_top"] = float(np.mean([r.drop_top for r in ok]))
            metrics[f"faithfulness_{name}_drop_random"] = float(np.mean([r.drop_random for r in ok]))
            metrics[f"faithfulness_{name}_pairs"] = len(ok)
    return metrics, ci
