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
from napari_pathalign.eval.truth import PartTruth, organ_of, tumour_labels
from napari_pathalign.reporting.ontology import Organ, load_ontology

MOSTLY = 0.5  # a patch "lies on" a class when more than this share of its area is that class
DELETE_FRACTION = 0.10  # share of patches removed by the deletion test
RANDOM_DRAWS = 5  # random deletions averaged per pair


def tumour_text(truth: PartTruth) -> str:
    """The phrase a pathologist would type for the slide's tumour: the name of its largest tumour class (the
    organ's first tumour class on a slide without tumour)."""
    organ = organ_of(truth)
    present = tumour_labels(truth)
    names = {c.label: c.name for c in organ.tumour_classes}
    return names[present[0]] if present else organ.tumour_classes[0].name


def class_text(label: str, organ: Organ) -> str:
    """What a pathologist types for a class: a tumour class's name, a tissue's first phrase."""
    c = next(c for c in organ.classes if c.label == label)
    return c.name if c.tumour else c.phrases[0]


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
    analyses: list, class_maps: list, truths: list[PartTruth], progress: bool = True
) -> tuple[dict, dict]:
    """Localisation AUCs (text, text-weighted and plain attention, each class; the tumour as all tumour classes
    together, and for an organ with several, each subtype by its own name) and faithfulness."""
    from tqdm import tqdm

    from napari_pathalign.eval.class_maps import patch_class_fractions

    per: dict[str, list] = {}  # metric -> per-slide values (None: not defined on that slide)
    deletions: dict[str, list] = {"text": [], "attention": []}
    onto = load_ontology()
    for a, cmap, truth in tqdm(
        list(zip(analyses, class_maps, truths)), desc="localisation", unit="slide", disable=not progress
    ):
        f = a.features
        organ = organ_of(truth, onto)
        frac = patch_class_fractions(cmap, f.xy_level0, f.size_level0)  # (N, C)
        mostly = {c: frac[:, k] > MOSTLY for k, c in enumerate(cmap.classes)}
        tumour = {c.label for c in organ.tumour_classes}
        text = tumour_text(truth)
        pos = np.zeros(len(frac), bool)
        for k, c in enumerate(cmap.classes):
            if c in tumour:
                pos |= mostly[c]
        # a patch "is tumour" when most of it is tumour of any class: the sum, not one class, passes MOSTLY
        pos |= frac[:, [k for k, c in enumerate(cmap.classes) if c in tumour]].sum(1) > MOSTLY
        maps = {
            "text": a.text_heatmap(text),
            "attention_text": a.attention_heatmap(text=text),
            "attention_mean": a.attention_heatmap(),
        }
        for name, h in maps.items():
            per.setdefault(f"localisation_tumour_auc_{name}", []).append(slide_auc(h.values, pos))
        for cls, is_cls in mostly.items():
            if cls not in tumour:
                per.setdefault(f"localisation_auc_{cls}", []).append(
                    slide_auc(a.text_heatmap(class_text(cls, organ)).values, is_cls)
                )
            elif len(tumour) > 1 and is_cls.any():  # a subtype, by its own name, against every other patch
                per.setdefault("localisation_subtype_auc", []).append(
                    slide_auc(a.text_heatmap(class_text(cls, organ)).values, is_cls)
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
