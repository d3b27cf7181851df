"""Evaluation pieces: the clinical-fact parser against the report writer, VQA answer parsing, retrieval top-k."""

import numpy as np
import pytest

from napari_pathalign.core.metrics import top_k_accuracy
from napari_pathalign.demo.report_writer import answers, questions, write_part
from napari_pathalign.eval.facts import (
    parse_extent_answer,
    parse_facts,
    parse_subtype_answer,
    parse_tissue_answer,
    parse_yes_no,
    truth_facts,
)
from napari_pathalign.eval.truth import PartTruth, organ_of, subtypes, truth_tissues
from napari_pathalign.reporting.ontology import load_ontology

KATHER = ["TUMOR", "STROMA", "COMPLEX", "LYMPHO", "DEBRIS", "MUCOSA", "ADIPOSE"]
LUNG_TUMOURS = ["adenocarcinoma", "squamous_cell_carcinoma"]


def bucket(fraction):
    return load_ontology().bucket(fraction)


def random_truth(rng):
    kind = rng.random()
    if kind < 0.35:
        t = float(rng.choice([0.0, rng.uniform(0.01, 0.09), rng.uniform(0.11, 0.29), rng.uniform(0.31, 0.8)]))
        return PartTruth("pcam", {"normal": 1 - t, **({"tumour": t} if t else {})}, t)
    if kind < 0.7:
        classes = list(rng.choice(KATHER, size=int(rng.integers(1, 5)), replace=False))
        w = rng.dirichlet(np.ones(len(classes)))
        fractions = dict(zip(classes, map(float, w)))
        return PartTruth("kather", fractions, fractions.get("TUMOR", 0.0))
    present = [LUNG_TUMOURS[:1], LUNG_TUMOURS[1:], LUNG_TUMOURS, []][int(rng.integers(4))]
    w = rng.dirichlet(np.ones(len(present) + 1))
    fractions = {"benign": float(w[0]), **{c: float(f) for c, f in zip(present, w[1:])}}
    return PartTruth("lung", fractions, float(sum(w[1:])))


def test_parser_reads_back_every_written_report():
    """The writer's vocabulary and the parser agree on 300 random slides, in every phrasing."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        truth = random_truth(rng)
        text = write_part(truth, rng)
        assert parse_facts(text, organ=organ_of(truth).name) == truth_facts(truth), text


def test_parser_is_not_fooled_by_negations():
    assert parse_facts("Lymph node: negative for metastatic carcinoma.") == {("tumour", "no")}
    assert parse_facts("No evidence of malignancy. Background shows adipose tissue.") == {
        ("tumour", "no"),
        ("tissue", "ADIPOSE"),
    }
    assert ("tumour", "yes") in parse_facts("Involved by metastatic carcinoma, about 45% of the tissue.")
    assert ("extent", "extensive") in parse_facts("Involved by metastatic carcinoma, about 45% of the tissue.")
    assert parse_facts("") == set()


def test_closed_answers_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(100):
        truth = random_truth(rng)
        a = answers(truth)
        assert parse_yes_no(a["tumour"]) == ("yes" if truth.tumour_fraction > 0 else "no")
        assert parse_tissue_answer(a["tissues"], truth) == set(truth_tissues(truth)), a["tissues"]
        assert parse_extent_answer(a["extent"]) == (bucket(truth.tumour_fraction) or "none"), a["extent"]
        organ = organ_of(truth)
        for c in organ.tumour_classes:  # "Is there <class>?" for every tumour class of the organ
            present = truth.fractions.get(c.label, 0) > 0
            assert parse_yes_no(a[f"class:{c.name}"]) == ("yes" if present else "no")
            assert c.name in questions(f"class:{c.name}")[0]
        if subtypes(truth) is not None:
            assert parse_subtype_answer(a["subtype"], organ.name) == set(subtypes(truth)), a["subtype"]
        else:
            assert "subtype" not in a
    assert parse_yes_no("maybe") is None


def test_lung_reports_name_subtypes_and_the_parser_reads_them():
    truth = PartTruth("lung", {"benign": 0.7, "squamous_cell_carcinoma": 0.3}, 0.3)
    rng = np.random.default_rng(3)
    texts = {write_part(truth, rng) for _ in range(20)}
    assert all(t.startswith("Lung, ") and "lobe" in t for t in texts)
    for t in texts:
        assert ("subtype", "squamous cell carcinoma") in parse_facts(t, organ="lung"), t
        assert ("subtype", "adenocarcinoma") not in parse_facts(t, organ="lung"), t
    facts = parse_facts(
        "Lung, left upper lobe, lobectomy: lung adenocarcinoma. No squamous cell carcinoma.", organ="lung"
    )
    assert ("subtype", "adenocarcinoma") in facts and ("subtype", "squamous cell carcinoma") not in facts
    # colon's single tumour class is no subtype task
    assert not any(k == "subtype" for k, _ in parse_facts("Colon: invasive adenocarcinoma.", organ="colon"))


def test_top_k_accuracy():
    sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.1, 0.7, 0.6]])
    pos = np.eye(3, dtype=bool)
    assert top_k_accuracy(sim, pos, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(sim, pos, 2) == pytest.approx(1.0)
    pos[1, 2] = True  # an equivalent report also counts
    assert top_k_accuracy(sim, pos, 1) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same"):
        top_k_accuracy(sim, pos[:2], 1)


def test_bootstrap_interval_matches_the_binomial_spread():
    """A 40-slide accuracy of 0.65 is uncertain by about +-0.15; 400 slides narrow it ~3x."""
    from napari_pathalign.eval.bootstrap import bootstrap_ci

    mean = lambda x: float(x.mean())  # noqa: E731
    small = bootstrap_ci(mean, {"x": np.array([1] * 26 + [0] * 14)})
    big = bootstrap_ci(mean, {"x": np.array([1] * 260 + [0] * 140)})
    half = 1.96 * np.sqrt(0.65 * 0.35 / 40)  # normal approximation: 0.148
    assert small[0] < 0.65 < small[1] and small[1] - small[0] == pytest.approx(2 * half, rel=0.15)
    assert (big[1] - big[0]) == pytest.approx((small[1] - small[0]) / np.sqrt(10), rel=0.2)
    assert bootstrap_ci(mean, {"x": np.ones(40)}) == (1.0, 1.0)
    assert small == bootstrap_ci(mean, {"x": np.array([1] * 26 + [0] * 14)})  # seeded


def test_bootstrap_skips_undefined_resamples_and_checks_columns():
    from napari_pathalign.core.metrics import auc
    from napari_pathalign.eval.bootstrap import bootstrap_ci

    score, positive = np.arange(10.0), np.arange(10) >= 9  # one positive, ranked first: ~35% of resamples lack it
    assert bootstrap_ci(auc, {"score": score, "positive": positive}) == (1.0, 1.0)  # those are skipped, not scored
    assert bootstrap_ci(lambda score, positive: None, {"score": score, "positive": positive}) is None
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ci(auc, {"score": score, "positive": positive[:5]})


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from napari_pathalign.core.metrics import auc

    rng = np.random.default_rng(0)
    score, positive = rng.integers(0, 5, 200).astype(float), rng.random(200) < 0.3  # many ties
    assert auc(score, positive) == pytest.approx(roc_auc_score(positive, score))
    assert auc(score, np.zeros(200, bool)) is None


def test_facts_read_with_the_ontology_match_what_the_demo_writer_wrote():
    """The clinical-fact parser reads the ontology's claims; on reports and answers the demo writer made
    from a known composition it recovers exactly that composition's facts (sparse compositions too)."""
    from napari_pathalign.train.tile_sources import KATHER_CLASSES, LUNG_CLASSES

    rng = np.random.default_rng(0)
    for i in range(300):
        source = ("pcam", "kather", "lung")[i % 3]
        classes = {"pcam": ["tumour", "normal"], "kather": KATHER_CLASSES, "lung": LUNG_CLASSES}[source]
        w = rng.dirichlet(np.ones(len(classes)) * 0.7)
        if rng.random() < 0.3:
            w[0] = 0
            w = w / w.sum()
        fractions = dict(zip(classes, w.round(3)))
        tumour = {c.label for c in organ_of(PartTruth(source, fractions, 0)).tumour_classes}
        truth = PartTruth(source, fractions, float(sum(f for c, f in fractions.items() if c in tumour)))
        assert parse_facts(write_part(truth, rng), organ=organ_of(truth).name) == truth_facts(truth)
        said = answers(truth)
        assert parse_extent_answer(said["extent"]) == (bucket(truth.tumour_fraction) or "none")
        assert parse_tissue_answer(said["tissues"], truth) == set(truth_tissues(truth))
    assert parse_facts("No.") == {("tumour", "no")} and parse_facts("No adenocarcinoma is seen.") == {("tumour", "no")}
