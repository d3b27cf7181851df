"""Can a reader trust a draft sentence by sentence? Support, evidence, follow-ups and regions on demo slides.

All four run on prepared ``SlideAnalysis`` objects of held-out demo slides (ground truth from
slides.csv, cell classes from the class maps), with greedy decoding:

- **Support calibration**: each draft sentence that states a clinical fact (``eval/facts.py``) is
  TRUE when every fact it states is in the slide's ground truth, FALSE otherwise; sentences without
  a fact (specimen lines) are skipped. Reported: the AUC of ``support`` separating true from false
  sentences, and the share of true sentences among the unflagged (support >= ``LOW_SUPPORT``) and
  the flagged ones. A reader who checks only the flagged sentences relies on that split.
- **Evidence faithfulness**: deleting a sentence's top 10% evidence patches must lower the
  retrieval model's slide-sentence similarity more than deleting a random 10% (the deletion test of
  ``eval/localisation.py``), for both evidence maps: the attribution (what the similarity used) and
  the text map (where the words match, shown to the reader). The similarity, not support: support
  is made of claims (LM choices, measured fractions) whose probabilities saturate near 0 and 1.
- **Follow-up questions**: 'Is tumour present?' asked after 'Which tissues are present?' with the
  first turn as history, against the same question asked alone.
- **Region questions**: 'Is tumour present?' asked of a square on the slide's largest tumour area
  and of a square on tumour-free tissue, each about a quarter of the tissue's bounding box.

Confidence intervals resample slides, not sentences: the sentences of one draft stand or fall together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_pathalign.core.generators import run_to_end
from napari_pathalign.core.metrics import auc
from napari_pathalign.eval.bootstrap import bootstrap_ci
from napari_pathalign.eval.class_maps import GLASS, ClassMap, patch_class_fractions
from napari_pathalign.eval.facts import parse_facts, parse_yes_no, truth_facts
from napari_pathalign.eval.localisation import deletion_test
from napari_pathalign.eval.truth import PartTruth, closed_questions, organ_of
from napari_pathalign.reporting.drafting import iter_answer, iter_draft

REGION_FRACTION = 0.25  # region side as a share of the tissue's bounding-box side
MIN_REGION_PATCHES = 4  # fewer patches than this say too little to ask about


def sentence_facts(text: str, truth: PartTruth) -> set[tuple[str, str]]:
    """The facts one sentence states about the slide of ``truth``. An extent sentence ("Tumour forms a
    small focus.") names no tumour, so the parser, which reads extents only after a tumour call, would
    see nothing: it is read after a tumour call of the organ ("<first tumour class>."), and so states
    tumour present and its extent bucket (not a subtype)."""
    organ = organ_of(truth)
    facts = parse_facts(text, organ=organ.name)
    if not any(k == "tumour" for k, _ in facts):
        implied = parse_facts(f"{organ.tumour_classes[0].name}. {text}")
        if any(k == "extent" for k, _ in implied):
            return implied
    return facts


def sentence_label(text: str, truth: PartTruth) -> bool | None:
    """True when every fact the sentence states is true of the slide, False when one is not, None
    when it states none."""
    facts = sentence_facts(text, truth)
    return None if not facts else facts <= truth_facts(truth)


@dataclass
class SlideStatements:
    """The fact-bearing sentences of one slide's draft, with their support and deletion test."""

    support: np.ndarray  # (S,) support of each sentence in [0, 1]
    true: np.ndarray  # (S,) bool, all its facts true of the slide
    drop_top: np.ndarray  # (S,) similarity drop after deleting its top 10% text-map patches (NaN: no test)
    drop_random: np.ndarray  # (S,) the same for a random 10%, mean of 5 draws
    attr_top: np.ndarray  # (S,) similarity drop after deleting its top 10% attribution patches (NaN: no test)
    attr_random: np.ndarray  # (S,) the random 10% of that test (same seed as the text map's)
    skipped: int  # sentences without a fact


@dataclass
class RegionPair:
    """Two squares on one slide: on its largest tumour area and on tumour-free tissue."""

    tumour_xy_level0: np.ndarray  # (4, 2) level-0 (x, y) polygon
    normal_xy_level0: np.ndarray  # (4, 2)
    tumour_patches: np.ndarray  # (k,) indices of the patches whose centres lie inside
    normal_patches: np.ndarray  # (m,)


def _pool(slides: list[SlideStatements], index) -> SlideStatements:
    """The sentences of the slides at ``index`` (a slide drawn twice counts twice)."""
    picked = [slides[i] for i in index]

    def cat(name, dtype):
        return np.concatenate([getattr(s, name) for s in picked]).astype(dtype) if picked else np.zeros(0, dtype)

    return SlideStatements(
        cat("support", float),
        cat("true", bool),
        cat("drop_top", float),
        cat("drop_random", float),
        cat("attr_top", float),
        cat("attr_random", float),
        sum(s.skipped for s in picked),
    )


def _precision(true: np.ndarray) -> float | None:
    return float(true.mean()) if len(true) else None


def draft_statements(analysis, truth: PartTruth, seed: int = 0) -> SlideStatements:
    """Draft the slide (greedy), label each sentence and run its deletion test."""
    draft = run_to_end(iter_draft(analysis))
    support, true, skipped = [], [], 0
    drops: dict[str, list] = {"text": [], "attribution": []}  # (top, random) per sentence
    for k, s in enumerate(draft.sentences):
        label = sentence_label(s.text, truth)
        if label is None:
            skipped += 1
            continue
        support.append(s.support)
        true.append(label)
        for name, heatmap in (("text", s.evidence.heatmap), ("attribution", s.evidence.attribution)):
            d = None if heatmap is None else deletion_test(analysis, heatmap, s.text, "retrieval", seed=seed * 1000 + k)
            drops[name].append((np.nan, np.nan) if d is None else (d.drop_top, d.drop_random))
    t, a = (np.array(drops[n], float).reshape(-1, 2) for n in ("text", "attribution"))
    return SlideStatements(np.array(support, float), np.array(true, bool), t[:, 0], t[:, 1], a[:, 0], a[:, 1], skipped)


def support_metrics(slides: list[SlideStatements]) -> tuple[dict, dict]:
    """Support AUC (true vs false sentences), precision of unflagged vs flagged sentences, and evidence faithfulness."""
    from napari_pathalign.reporting.drafting import LOW_SUPPORT

    every = _pool(slides, range(len(slides)))
    unflagged = every.support >= LOW_SUPPORT
    tested = np.isfinite(every.drop_top)
    faithful = every.drop_top[tested] > every.drop_random[tested]
    attributed = np.isfinite(every.attr_top)
    metrics = {
        "support_auc": auc(every.support, every.true),
        "support_true_sentences": int(every.true.sum()),
        "support_false_sentences": int((~every.true).sum()),
        "support_skipped_sentences": int(every.skipped),
        "support_precision_unflagged": _precision(every.true[unflagged]),
        "support_unflagged_sentences": int(unflagged.sum()),
        "support_precision_flagged": _precision(every.true[~unflagged]),
        "support_flagged_sentences": int((~unflagged).sum()),
        "evidence_attribution_faithful_share": float(
            (every.attr_top[attributed] > every.attr_random[attributed]).mean()
        )
        if attributed.any()
        else None,
        "evidence_attribution_drop_top": float(every.attr_top[attributed].mean()) if attributed.any() else None,
        "evidence_attribution_drop_random": float(every.attr_random[attributed].mean()) if attributed.any() else None,
        "evidence_text_map_faithful_share": float(faithful.mean()) if tested.any() else None,
        "evidence_text_map_drop_top": float(every.drop_top[tested].mean()) if tested.any() else None,
        "evidence_text_map_drop_random": float(every.drop_random[tested].mean()) if tested.any() else None,
        "evidence_sentences": int(tested.sum()),
    }

    def support_auc(slide):
        p = _pool(slides, slide)
        return auc(p.support, p.true)

    def share(slide, top="drop_top", rand="drop_random"):
        p = _pool(slides, slide)
        t, r = getattr(p, top), getattr(p, rand)
        ok = np.isfinite(t)
        return float((t[ok] > r[ok]).mean()) if ok.any() else None

    ci = {}
    if slides and metrics["support_auc"] is not None:
        ci["support_auc"] = bootstrap_ci(support_auc, {"slide": np.arange(len(slides))})
    if slides and tested.any():
        ci["evidence_text_map_faithful_share"] = bootstrap_ci(share, {"slide": np.arange(len(slides))})
    if slides and attributed.any():
        ci["evidence_attribution_faithful_share"] = bootstrap_ci(
            lambda slide: share(slide, "attr_top", "attr_random"), {"slide": np.arange(len(slides))}
        )
    return metrics, ci


def follow_up_metrics(analyses: list, truths: list[PartTruth], progress: bool = True) -> tuple[dict, dict]:
    """'Is tumour present?' after 'Which tissues are present?' (history) vs asked alone."""
    from tqdm import tqdm

    first, question = closed_questions()["tissues"][0], closed_questions()["tumour"][0]
    multi, single, used = [], [], []
    for a, t in tqdm(list(zip(analyses, truths)), desc="follow-up questions", unit="slide", disable=not progress):
        expected = "yes" if t.tumour_fraction > 0 else "no"
        a1 = run_to_end(iter_answer(a, first))
        a2 = run_to_end(iter_answer(a, question, history=[(first, a1.text)]))
        alone = run_to_end(iter_answer(a, question))
        multi.append(parse_yes_no(a2.text) == expected)
        single.append(parse_yes_no(alone.text) == expected)
        used.append(a2.history_used)
    if not analyses:
        return {}, {}
    metrics = {
        "vqa_followup_tumour": float(np.mean(multi)),
        "vqa_single_turn_tumour": float(np.mean(single)),
        "vqa_followup_history_used": float(np.mean(used)),
        "vqa_followup_slides": len(analyses),
    }
    return metrics, {"vqa_followup_tumour": bootstrap_ci(lambda x: float(np.mean(x)), {"x": np.array(multi, float)})}


def _square(r0: int, c0: int, k: int, cell: int) -> np.ndarray:
    """The (4, 2) level-0 polygon of the k x k cells from (row r0, col c0)."""
    x, y, s = c0 * cell, r0 * cell, k * cell
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], np.float64)


def region_pair(
    class_map: ClassMap,
    tumour_class,
    xy_level0: np.ndarray,
    size_level0: int,
    min_patches: int = MIN_REGION_PATCHES,
) -> RegionPair | None:
    """A square on the largest tumour area and one on tumour-free tissue, or None when the slide has none.

    Squares lie on the class map's cells, ``REGION_FRACTION`` of the tissue's bounding-box side
    (the longer one). The tumour square is the one holding the most tumour cells; the normal square
    the one holding the most tissue among those whose patches (centres inside, as
    ``SlideAnalysis.region`` takes them) touch no tumour cell: a patch reaches past the square, and
    the model sees the whole patch. Each needs ``min_patches`` patches. ``tumour_class`` is a class-map
    label, or several (an organ's tumour classes together).
    """
    from napari_pathalign.engine.regions import patches_in_polygon

    wanted = [tumour_class] if isinstance(tumour_class, str) else list(tumour_class)
    index = [class_map.classes.index(c) for c in wanted if c in class_map.classes]
    if not index:
        return None
    grid, cell = class_map.grid, class_map.cell_size_level0
    tumour = np.isin(grid, index)  # (rows, cols)
    tissue = grid != GLASS
    if not tumour.any():
        return None
    rows, cols = np.nonzero(tissue)
    k = max(1, int(round(REGION_FRACTION * max(np.ptp(rows) + 1, np.ptp(cols) + 1))))
    if k > min(grid.shape):
        return None

    def window_sums(mask):  # (rows - k + 1, cols - k + 1): cells of mask in the k x k square at each top-left cell
        c = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]

    n_tumour, n_tissue = window_sums(tumour), window_sums(tissue)
    t_cols = index  # the class-map columns of the tumour classes

    def first(order, ok):
        for flat in order:
            r0, c0 = np.unravel_index(flat, n_tumour.shape)
            poly = _square(int(r0), int(c0), k, cell)
            inside = patches_in_polygon(xy_level0, size_level0, poly)
            if len(inside) >= min_patches and ok(r0, c0, inside):
                return poly, inside
        return None

    tumour_pick = first(np.argsort(-n_tumour, axis=None, kind="stable"), lambda r0, c0, inside: n_tumour[r0, c0] > 0)

    def clean(r0, c0, inside):
        return (
            n_tumour[r0, c0] == 0
            and n_tissue[r0, c0] > 0
            and not patch_class_fractions(class_map, xy_level0[inside], size_level0)[:, t_cols].any()
        )  # noqa: E731

    normal_pick = first(np.argsort(-n_tissue, axis=None, kind="stable"), clean)
    if tumour_pick is None or normal_pick is None:
        return None
    return RegionPair(tumour_pick[0], normal_pick[0], tumour_pick[1], normal_pick[1])


def region_metrics(
    analyses: list, class_maps: list[ClassMap], truths: list[PartTruth], progress: bool = True
) -> tuple[dict, dict]:
    """'Is tumour present?' of a tumour square (expect yes) and a tumour-free square (expect no) per tumour slide."""
    from tqdm import tqdm

    question = closed_questions()["tumour"][0]
    tumour_ok, normal_ok = [], []
    for a, cmap, t in tqdm(
        list(zip(analyses, class_maps, truths)), desc="region questions", unit="slide", disable=not progress
    ):
        if t.tumour_fraction <= 0:
            continue
        f = a.features
        tumour = [c.label for c in organ_of(t).tumour_classes]
        pair = region_pair(cmap, tumour, f.xy_level0, f.size_level0)
        if pair is None:
            continue
        tumour_ok.append(parse_yes_no(run_to_end(iter_answer(a.region(pair.tumour_xy_level0), question)).text) == "yes")
        normal_ok.append(parse_yes_no(run_to_end(iter_answer(a.region(pair.normal_xy_level0), question)).text) == "no")
    if not tumour_ok:
        return {}, {}
    per_slide = (np.array(tumour_ok, float) + np.array(normal_ok, float)) / 2
    metrics = {
        "region_accuracy": float(per_slide.mean()),
        "region_tumour_accuracy": float(np.mean(tumour_ok)),
        "region_normal_accuracy": float(np.mean(normal_ok)),
        "region_slides": len(tumour_ok),
    }
    return metrics, {"region_accuracy": bootstrap_ci(lambda x: float(np.mean(x)), {"x": per_slide})}


def statement_metrics(
    analyses: list, class_maps: list[ClassMap], truths: list[PartTruth], progress: bool = True
) -> tuple[dict, dict]:
    """Support calibration, evidence faithfulness, follow-up and region questions on prepared analyses."""
    from tqdm import tqdm

    slides = [
        draft_statements(a, t, seed=i)
        for i, (a, t) in enumerate(
            tqdm(list(zip(analyses, truths)), desc="draft sentences", unit="slide", disable=not progress)
        )
    ]
    metrics, ci = support_metrics(slides)
    for m, c in (follow_up_metrics(analyses, truths, progress), region_metrics(analyses, class_maps, truths, progress)):
        metrics.update(m)
        ci.update(c)
    return metrics, ci
