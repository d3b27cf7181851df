"""Claims in report sentences (reporting/claims.py): finding them, and the calibrated measurement error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_pathalign.reporting.claims import Calibration, calibration_file, find_claims, load_calibration


def kinds(sentence, question=None):
    return [(c.kind, c.value, c.phrase) for c in find_claims(sentence, question)]


@pytest.mark.parametrize(
    "sentence, expected",
    [
        # a negative call is one claim, not a negative and a nested positive
        (
            "Lymph node, left axillary, excision: Negative for metastatic carcinoma.",
            [("negative", "tumour", "Negative for metastatic carcinoma")],
        ),
        (
            "Colon, sigmoid, biopsy: Invasive adenocarcinoma.",
            [("diagnosis", "adenocarcinoma", "Invasive adenocarcinoma")],
        ),
        # the extent phrase wins over the percentage that repeats it
        ("Tumour forms a small focus (about 4% of the tissue).", [("extent", "small", "a small focus")]),
        ("Approximately 20% of the tissue is involved.", [("extent", "moderate", "20%")]),
        ("Less than 10% of the tissue.", [("extent", "small", "Less than 10%")]),
        (
            "Background shows fibrous stroma and adipose tissue.",
            [("tissue", "stroma", "fibrous stroma"), ("tissue", "adipose", "adipose tissue")],
        ),
        ("Lymph node, sentinel, biopsy:", []),  # a specimen line claims nothing
        ("Yes.", []),  # "yes" is a claim only as an answer to a question
        ("Tumour-associated stroma.", [("tissue", "stroma", "Tumour-associated stroma")]),  # not a tumour call
    ],
)
def test_find_claims(sentence, expected):
    assert kinds(sentence) == expected


def test_answers_are_claims_only_after_a_question():
    assert kinds("Yes.", "Is tumour present?") == [("answer", "yes", "Yes")]
    assert kinds("No, none seen.", "Is tumour present?") == [("answer", "no", "No")]
    assert kinds("Nodal lymphoid parenchyma.", "Which tissues are present?") == [
        ("tissue", "lymphoid tissue", "Nodal lymphoid parenchyma")
    ]


def test_calibration_buckets_are_probabilities_and_follow_the_measurement():
    cal = Calibration(slope=0.8, intercept=-0.3, sigma=0.7)
    buckets = [(0, 0.1), (0.1, 0.3), (0.3, 1.0)]
    for measured in (0.01, 0.08, 0.2, 0.5, 0.95):
        p = [cal.probability(measured, lo, hi) for lo, hi in buckets]
        assert all(0 <= x <= 1 for x in p) and abs(sum(p) - 1) < 1e-9
    extensive = [cal.probability(m, 0.3, 1.0) for m in (0.05, 0.2, 0.4, 0.8)]
    assert extensive == sorted(extensive) and extensive[0] < 0.1 < 0.5 < extensive[-1]
    assert 0 < cal.estimate(0.2) < 1 and cal.estimate(0.5) > cal.estimate(0.2)
    assert Calibration(1.0, 0.0, 0.3).estimate(0.25) == pytest.approx(0.25)  # identity calibration


def test_the_shipped_calibration_says_how_it_was_fitted():
    data = json.loads(calibration_file().read_text())
    cal = load_calibration()
    assert set(cal) == {"head", "zero-shot"} and all(
        {"tumour", "tissue", "tissue:LYMPHO", "tissue:normal"} <= set(c) for c in cal.values()
    )
    assert all(
        c.sigma > 0 and c.slope >= 0 for per in cal.values() for c in per.values()
    )  # 0: a class the method cannot measure
    assert all(c.slope > 0 for c in cal["head"].values())
    assert data["provenance"]["script"] == "scripts/fit_claim_checker.py" and data["head"]["tumour"]["pairs"] >= 20
    assert np.isfinite(
        [
            data[m][k][f]
            for m in ("head", "zero-shot")
            for k in ("tumour", "tissue")
            for f in ("slope", "intercept", "sigma")
        ]
    ).all()


def test_a_tumour_share_is_read_with_its_organs_own_error_fitted_on_unseen_tissue():
    """The head is biased on tissue it never saw (unseen lung clusters: measured low); the calibration is fitted
    on a part of the train tiles the head did not see, per organ, and the checker reads an organ with its line."""
    from types import SimpleNamespace

    from napari_pathalign.reporting.claims import ClaimChecker

    data = json.loads(calibration_file().read_text())
    assert "part 1 of 2" in data["provenance"]["tiles"]
    cal = load_calibration()
    for method in ("head", "zero-shot"):
        assert {"tumour:lymph node", "tumour:colon", "tumour:lung"} <= set(cal[method])
        fake = SimpleNamespace(calibration=cal)
        assert ClaimChecker.tumour_error(fake, method, "lung") is cal[method]["tumour:lung"]
        assert ClaimChecker.tumour_error(fake, method, "an organ without its own line") is cal[method]["tumour"]


def test_measure_head_round_trip_and_probabilities():
    from napari_pathalign.reporting.measure_head import MeasureHead, OrganHead, load_head

    rng = np.random.default_rng(0)
    three = OrganHead(["a", "b", "c"], np.zeros(4), np.ones(4), rng.normal(size=(3, 4)), np.zeros(3))
    two = OrganHead(
        ["normal", "tumour"], np.ones(4), np.full(4, 2.0), rng.normal(size=(1, 4)), np.array([0.5])
    )  # sklearn's binary form
    head = MeasureHead({"x": three, "y": two}, "m" * 16, "e" * 16, {"script": "test"})
    again = MeasureHead.from_dict(json.loads(json.dumps(head.to_dict())))
    x = rng.normal(size=(5, 4))
    for h in (again.organs["x"], again.organs["y"]):
        p = h.probabilities(x)
        assert p.shape == (5, len(h.classes)) and np.allclose(p.sum(1), 1) and (p >= 0).all()
    z = (x - 1) / 2 @ two.coef.T + 0.5
    assert np.allclose(again.organs["y"].probabilities(x)[:, 1], 1 / (1 + np.exp(-z[:, 0])), atol=1e-5)
    assert again.applies_to("m" * 16, "e" * 16) and not again.applies_to("m" * 16, "other")
    shipped = load_head()
    assert shipped is not None and set(shipped.organs) == {"lymph node", "colon", "lung"}
    assert shipped.organs["lung"].classes[:2] == ["adenocarcinoma", "squamous_cell_carcinoma"]
    assert (
        shipped.organs["colon"].classes[0] == "TUMOR" and shipped.provenance["script"] == "scripts/fit_claim_checker.py"
    )
