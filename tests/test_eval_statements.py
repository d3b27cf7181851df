"""Statement-level evaluation: true/false draft sentences, region squares from class maps, and the
metrics end to end on six small held-out demo slides with the shipped embedded models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathalign.eval.class_maps import GLASS, ClassMap, patch_class_fractions
from napari_pathalign.eval.statements import (
    SlideStatements,
    region_pair,
    sentence_facts,
    sentence_label,
    support_metrics,
)
from napari_pathalign.eval.truth import PartTruth

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiles"
POSITIVE = PartTruth("pcam", {"normal": 0.8, "tumour": 0.2}, 0.2)  # moderate extent, lymphoid background
NEGATIVE = PartTruth("kather", {"STROMA": 0.6, "ADIPOSE": 0.4}, 0.0)


@pytest.mark.parametrize(
    "text, truth, expected",
    [
        ("Lymph node, sentinel, excision: Metastatic carcinoma.", POSITIVE, True),
        ("Negative for metastatic carcinoma.", POSITIVE, False),
        ("Tumour forms partial involvement (about 20% of the tissue).", POSITIVE, True),
        ("Tumour forms a small focus (about 4% of the tissue).", POSITIVE, False),  # wrong extent bucket
        ("Background shows reactive lymphoid tissue.", POSITIVE, True),
        ("Background shows reactive lymphoid tissue and mature fat.", POSITIVE, False),  # one of two facts wrong
        ("Colon, sigmoid, biopsy: No tumour identified.", NEGATIVE, True),
        (
            "Extent: a small focus, approximately 4% of the tissue.",
            NEGATIVE,
            False,
        ),  # states tumour on a negative slide
        ("The remaining tissue is fibrous stroma and fatty tissue.", NEGATIVE, True),
        ("Lymph node, sentinel, excision:", POSITIVE, None),  # no fact: skipped
    ],
)
def test_sentence_label(text, truth, expected):
    assert sentence_label(text, truth) is expected


def test_extent_sentence_states_tumour_and_its_bucket():
    assert sentence_facts("Tumour forms widespread replacement.", NEGATIVE) == {
        ("tumour", "yes"),
        ("extent", "extensive"),
    }
    assert sentence_facts("Background shows adipose tissue.", NEGATIVE) == {("tissue", "ADIPOSE")}
    lung = PartTruth("lung", {"benign": 0.8, "adenocarcinoma": 0.2}, 0.2)
    assert sentence_facts("Tumour forms a small focus.", lung) == {("tumour", "yes"), ("extent", "small")}
    assert sentence_label("Histologic type: squamous cell carcinoma.", lung) is False  # the wrong subtype
    assert sentence_label("Lung adenocarcinoma, partial involvement.", lung) is True


def test_support_metrics_on_hand_made_sentences():
    def slide(support, true):
        n = len(support)
        return SlideStatements(
            np.array(support, float),
            np.array(true, bool),
            np.full(n, 0.2),
            np.full(n, 0.1),
            np.full(n, 0.3),
            np.full(n, 0.4),
            1,
        )

    slides = [
        slide([0.9, 0.8, 0.2], [True, True, False]),
        slide([0.7, 0.1], [True, False]),
        slide([0.95, 0.3], [True, False]),
    ]
    m, ci = support_metrics(slides)
    assert m["support_auc"] == 1.0 and m["support_true_sentences"] == 4 and m["support_false_sentences"] == 3
    assert m["support_precision_unflagged"] == 1.0 and m["support_precision_flagged"] == 0.0
    assert (
        m["support_unflagged_sentences"] == 4
        and m["support_flagged_sentences"] == 3
        and m["support_skipped_sentences"] == 3
    )
    assert m["evidence_text_map_faithful_share"] == 1.0 and m["evidence_sentences"] == 7
    assert m["evidence_attribution_faithful_share"] == 0.0  # its top deletions drop less than the random ones
    assert ci["support_auc"] == (1.0, 1.0)
    slides[0].support[:] = [0.1, 0.2, 0.9]  # now a true sentence scores below a false one
    assert support_metrics(slides)[0]["support_auc"] < 1.0


def hand_made_map() -> ClassMap:
    """8 x 8 cells of 10 px: a 3 x 3 tumour block at the top left, a glass column on the right."""
    grid = np.full((8, 8), 0, np.int64)  # 0: normal
    grid[0:3, 0:3] = 1  # tumour
    grid[:, 7] = GLASS
    return ClassMap(grid, ["normal", "tumour"], 10, 0.5)


def lattice(step: int, n: int) -> np.ndarray:
    ys, xs = np.mgrid[0:n, 0:n]
    return np.stack([xs.ravel(), ys.ravel()], 1) * step  # (n * n, 2) patch corners


def test_region_pair_on_cell_sized_patches():
    cmap = hand_made_map()
    xy = lattice(10, 8)  # one patch per cell
    pair = region_pair(cmap, "tumour", xy, 10)
    # tissue bounding box 8 x 7 cells -> squares of 2 x 2 cells (a quarter of the longer side)
    for poly in (pair.tumour_xy_level0, pair.normal_xy_level0):
        assert poly.shape == (4, 2) and np.ptp(poly[:, 0]) == np.ptp(poly[:, 1]) == 20
    frac = patch_class_fractions(cmap, xy, 10)[:, 1]  # (N,) tumour share of each patch
    assert len(pair.tumour_patches) == 4 and (frac[pair.tumour_patches] == 1).all()
    assert len(pair.normal_patches) == 4 and (frac[pair.normal_patches] == 0).all()
    assert (cmap.grid.ravel()[pair.normal_patches] == 0).all()  # on tissue, not glass


def test_region_pair_keeps_patches_that_reach_past_the_square_off_tumour():
    cmap = hand_made_map()
    xy = lattice(5, 16)  # 10-px patches every 5 px: each reaches 5 px past its centre
    pair = region_pair(cmap, "tumour", xy, 10)
    frac = patch_class_fractions(cmap, xy, 10)[:, 1]
    assert len(pair.normal_patches) >= 4 and (frac[pair.normal_patches] == 0).all()
    assert frac[pair.tumour_patches].mean() > 0.5


def test_region_pair_skips_slides_without_both_squares():
    cmap = hand_made_map()
    xy = lattice(10, 8)
    assert region_pair(cmap, "tumour", xy, 10, min_patches=5) is None  # a 2 x 2 square holds 4 patches
    no_tumour = ClassMap(np.zeros((8, 8), np.int64), ["normal", "tumour"], 10)
    assert region_pair(no_tumour, "tumour", xy, 10) is None
    all_tumour = ClassMap(np.ones((8, 8), np.int64), ["normal", "tumour"], 10)
    assert region_pair(all_tumour, "tumour", xy, 10) is None
    assert region_pair(cmap, "TUMOR", xy, 10) is None  # a class this map does not have


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Six held-out demo slides (10 x 12 cells) prepared with the shipped embedded models."""
    pytest.importorskip("torch")
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.demo.data import make_demo_data
    from napari_pathalign.eval.evaluate import embed_test_slides, read_truth
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign

    root = tmp_path_factory.mktemp("statements")
    make_demo_data(
        TILES, root / "demo", slides=0, test_slides=6, grid=(10, 12), seed=0, splits=("test",), progress=False
    )
    data = root / "demo" / "test"
    rows, truths, _ = read_truth(data)
    model, retrieval = PathAlign.load("embedded", device="cpu"), PathAlign.load("embedded-r", device="cpu")
    keep, analyses, maps = embed_test_slides(
        model, retrieval, load_patch_encoder("embedded", device="cpu"), GridConfig(), data, rows, root / "features"
    )
    return analyses, maps, [truths[i] for i in keep], model


@pytest.mark.slow
def test_statement_metrics_end_to_end(prepared):
    from napari_pathalign.eval.statements import statement_metrics
    from napari_pathalign.reporting.drafting import trained_with_history

    analyses, maps, truths, model = prepared
    assert len(analyses) == 6
    m, ci = statement_metrics(analyses, maps, truths, progress=False)
    sentences = m["support_true_sentences"] + m["support_false_sentences"]
    assert sentences > 0 and sentences == m["support_unflagged_sentences"] + m["support_flagged_sentences"]
    assert 0 < m["evidence_sentences"] <= sentences
    for key in ("support_precision_unflagged", "support_precision_flagged", "support_auc"):
        assert m[key] is None or 0 <= m[key] <= 1, key
    for key in (
        "evidence_text_map_faithful_share",
        "evidence_attribution_faithful_share",
        "vqa_followup_tumour",
        "vqa_single_turn_tumour",
        "region_accuracy",
        "region_tumour_accuracy",
        "region_normal_accuracy",
    ):
        assert 0 <= m[key] <= 1, key
    assert (
        np.isfinite(m["evidence_text_map_drop_top"])
        and np.isfinite(m["evidence_attribution_drop_top"])
        and np.isfinite(m["evidence_attribution_drop_random"])
    )
    assert m["vqa_followup_slides"] == 6
    assert m["vqa_followup_history_used"] == float(
        trained_with_history(model)
    )  # the embedded model says whether it reads history
    assert 0 < m["region_slides"] <= sum(t.tumour_fraction > 0 for t in truths)
    for key, interval in ci.items():
        assert key in m and (interval is None or interval[0] <= interval[1]), key
    assert "region_accuracy" in ci and "vqa_followup_tumour" in ci
