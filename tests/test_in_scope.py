"""The in-scope detector (models/in_scope.py): one Gaussian per training organ, a threshold from
held-out slides, a probability that caps support; and the shipped one on real slides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.models.in_scope import EMBEDDED_FILE, InScope, InScopeModel, cap_support

D = 16


def _slides(rng, centre, n_slides, n_patches=60, spread=1.0):
    return [centre + spread * rng.standard_normal((n_patches, D)) for _ in range(n_slides)]


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    a, b = np.zeros(D), np.full(D, 6.0)
    model = InScopeModel.fit(
        {"a": _slides(rng, a, 30), "b": _slides(rng, b, 30)},
        {"a": _slides(rng, a, 25), "b": _slides(rng, b, 25)},
        false_flag=0.04,
        encoder="toy",
        weights_hash="abc",
    )
    return model, rng, a, b


def test_each_organ_is_in_scope_and_tissue_between_them_is_not(fitted):
    """One Gaussian per organ: a tissue half-way between two organs is out of scope, though a single
    Gaussian over both would take it in."""
    model, rng, a, b = fitted
    for centre, organ in ((a, "a"), (b, "b")):
        s = model.score(_slides(rng, centre, 1)[0])
        assert isinstance(s, InScope) and not s.flagged and s.nearest_organ == organ and s.score > 0.5
    between = model.score(_slides(rng, (a + b) / 2, 1)[0])
    assert between.flagged and between.score < 0.5 and "outside what the model was trained on" in between.explanation
    assert model.score(_slides(rng, a, 1, spread=3.0)[0]).flagged  # a wider, unknown texture


def test_threshold_flags_at_most_the_asked_share_of_new_in_scope_slides(fitted):
    model, rng, a, b = fitted
    new = [model.score(s) for s in _slides(rng, a, 100) + _slides(rng, b, 100)]
    assert np.mean([s.flagged for s in new]) <= 0.1
    assert 0.9 < np.median([s.score for s in new]) < 1.0  # typical in-scope slide near 0.95


def test_probability_falls_with_distance_and_is_one_half_at_the_threshold(fitted):
    model = fitted[0]
    assert model.probability(model.threshold) == pytest.approx(0.5)
    d = np.linspace(model.threshold - 4 * model.width, model.threshold + 4 * model.width, 9)
    p = [model.probability(x) for x in d]
    assert all(x > y for x, y in zip(p, p[1:])) and p[0] > 0.95 and p[-1] < 0.05


def test_support_is_capped_only_on_flagged_slides(fitted):
    model, rng, a, b = fitted
    inside = model.score(_slides(rng, a, 1, n_patches=600)[0])  # many patches: a typical slide, surely in scope
    outside = model.score(_slides(rng, (a + b) / 2, 1)[0])
    assert cap_support(0.9, inside) == 0.9 and cap_support(0.9, None) == 0.9
    assert cap_support(0.9, outside) == pytest.approx(outside.score) and outside.score < 0.5
    assert cap_support(0.01, outside) == min(0.01, outside.score)


def test_save_load_round_trip_and_refusals(fitted, tmp_path):
    model, rng, a, _ = fitted
    x = _slides(rng, a, 1)[0]
    back = InScopeModel.load(model.save(tmp_path / "s.json"))
    assert back.score(x) == model.score(x) and list(back.organs) == ["a", "b"]
    d = back.score(x).to_dict()
    assert set(d) >= {"score", "flagged", "basis"} and json.dumps(d)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an in-scope model"):
        InScopeModel.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no patch features"):
        model.score(np.zeros((0, D)))
    with pytest.raises(ValueError, match="no fit slides"):
        InScopeModel.fit({"a": _slides(rng, a, 3)}, {"z": _slides(rng, a, 3)})


# -- the shipped detector of the embedded encoder ------------------------------------------------
@pytest.fixture(scope="module")
def shipped_scores(tmp_path_factory):
    pytest.importorskip("torch")
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.in_scope import load_embedded_in_scope

    encoder = load_patch_encoder("embedded", device="cpu")
    model = load_embedded_in_scope(encoder)
    cache = tmp_path_factory.mktemp("features")
    slides = {"skin": RESOURCES / "CMU-1-Small-Region.svs", "lymph node": RESOURCES / "demo-lymph-node.tif"}
    return model, {
        name: model.score(embed_slide(open_slide(path), encoder, GridConfig(), cache_dir=cache))
        for name, path in slides.items()
    }


def test_shipped_detector_flags_the_real_skin_biopsy_and_not_the_demo_lymph_node(shipped_scores):
    model, scores = shipped_scores
    assert set(model.organs) == {"lymph node", "colon", "lung"}  # the organs the shipped model was trained on
    skin, node = scores["skin"], scores["lymph node"]
    assert skin.flagged and skin.score < 0.5 and skin.n_patches > 20
    assert not node.flagged and node.score > 0.5 and node.nearest_organ == "lymph node"


def test_shipped_file_names_its_data_and_measures():
    doc = json.loads((RESOURCES / EMBEDDED_FILE).read_text())
    prov = doc["provenance"]
    assert (RESOURCES / EMBEDDED_FILE).stat().st_size < 3_000_000
    assert prov["calibration_slides"] >= 60 and prov["threshold_slides"] >= 15
    assert set(prov["fit_slides"]) == {"lymph node", "colon", "lung"}
    measured = prov["measured"]  # scripts/fit_in_scope.py --evaluate: the real out-of-scope slides of ../shared/data
    assert measured["out_of_scope_slides"] >= 15 and measured["in_scope_slides"] >= 15
    assert measured["out_of_scope_auc"] >= 0.95 and measured["out_of_scope_false_flag_rate"] <= 0.05


def test_out_of_scope_set_is_real_shared_data_and_its_metrics(tmp_path):
    """The out-of-scope slides come from ../shared/data (vendor slides, tissue tiles, the IHC image), written
    once as slides; the detection figures are an AUC over slide distances and rates of the flags."""
    from dataclasses import replace

    from napari_pathalign.eval.out_of_scope import detection_metrics, out_of_scope_slides, support_metrics
    from napari_pathalign.io import open_slide
    from tests.conftest import SHARED_DATA

    slides = out_of_scope_slides(SHARED_DATA, tmp_path)
    groups = {s.group for s in slides}
    assert any("CMU-1" in g for g in groups) and any("IHC" in g for g in groups) and len(slides) >= 15
    assert all(s.path.exists() for s in slides) and (tmp_path / "slides.csv").exists()
    assert open_slide(next(s.path for s in slides if "IHC" in s.group)).mpp == pytest.approx(0.5)
    mtime = next(s.path for s in slides if "IHC" in s.group).stat().st_mtime
    out_of_scope_slides(SHARED_DATA, tmp_path)  # reused, not rewritten
    assert next(s.path for s in slides if "IHC" in s.group).stat().st_mtime == mtime
    base = InScope(0.9, False, "b", 0.0, 0.1, "a", 0.0, 50, "")
    inside = [replace(base, distance=d, flagged=d > 0.1) for d in (-0.1, 0.0, 0.05, 0.12)]
    outside = [replace(base, distance=d, flagged=d > 0.1) for d in (0.08, 0.3, 0.5)]
    m, ci = detection_metrics(inside, outside, 0.1)
    assert m["out_of_scope_auc"] == pytest.approx(11 / 12) and m["out_of_scope_false_flag_rate"] == 0.25
    assert m["out_of_scope_detected"] == pytest.approx(2 / 3) and ci["out_of_scope_auc"] is not None
    s = support_metrics([0.01, 0.2, 0.7])
    assert s["out_of_scope_diagnosis_support_median"] == 0.2 and s["out_of_scope_diagnosis_support_above_half"] == 1 / 3
