"""The in-distribution score: fit, score, files, encoder checks, and the shipped one on real slides."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from napari_pathalign.core.resources import RESOURCES
from napari_pathalign.io.features import SlideFeatures
from napari_pathalign.models.distribution import FeatureDistribution, InDistribution, load_embedded_distribution

D = 12


def _correlated(rng, n: int, shift: float = 0.0) -> np.ndarray:
    mix = np.random.default_rng(7).normal(size=(D, D))  # the same correlation structure for every call
    return (rng.normal(size=(n, D)) @ mix + shift).astype(np.float32)  # (n, D)


@pytest.fixture(scope="module")
def fitted() -> FeatureDistribution:
    rng = np.random.default_rng(0)
    calibration = [_correlated(rng, 60) for _ in range(20)]
    return FeatureDistribution.fit(
        _correlated(rng, 3000), calibration, encoder="test-tiny", weights_hash="abc", training_data="the test data"
    )


def test_fit_and_score_shapes(fitted):
    x = _correlated(np.random.default_rng(1), 50)
    assert fitted.dim == D and fitted.whitener.shape == (D, D)
    assert np.allclose(fitted.whitener, np.tril(fitted.whitener))
    assert fitted.patch_scores(x).shape == (50,) and fitted.mahalanobis(x).shape == (50,)
    result = fitted.slide_score(x)
    assert isinstance(result, InDistribution) and result.n_patches == 50
    assert np.isfinite(fitted.threshold) and fitted.provenance["calibration_slides"] == 20
    with pytest.raises(ValueError, match=r"\(N, 12\)"):
        fitted.patch_scores(np.zeros((4, D + 1), np.float32))
    with pytest.raises(ValueError, match="no patch features"):
        fitted.slide_score(np.zeros((0, D), np.float32))


def test_held_out_data_scores_near_zero_and_shifted_data_higher(fitted):
    rng = np.random.default_rng(2)
    same = [fitted.slide_score(_correlated(rng, 60)) for _ in range(10)]
    shifted = fitted.slide_score(_correlated(rng, 60, shift=2.0))
    assert all(abs(r.score) < 0.15 for r in same)
    assert sum(r.warn for r in same) <= 1
    assert shifted.score > max(r.score for r in same) + 0.2
    assert shifted.warn and "unlike the test data" in shifted.explanation and "unreliable" in shifted.explanation


def test_mahalanobis_matches_the_covariance(fitted):
    """|W z|^2 equals z^T inv(C) z for the covariance C the whitener encodes."""
    z = np.random.default_rng(3).normal(size=(5, D))
    w = fitted.whitener.astype(np.float64)
    precision = w.T @ w
    x = z * fitted.scale + fitted.mean
    expected = np.sqrt(np.einsum("ij,jk,ik->i", z, precision, z))
    np.testing.assert_allclose(fitted.mahalanobis(x), expected, rtol=1e-4)


def test_uncalibrated_never_warns():
    rng = np.random.default_rng(4)
    dist = FeatureDistribution.fit(_correlated(rng, 500))
    result = dist.slide_score(_correlated(rng, 40, shift=5.0))
    assert result.score > 0.5 and not result.warn and "not calibrated" in result.explanation


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "dist.json")
    back = FeatureDistribution.load(path)
    x = _correlated(np.random.default_rng(5), 30, shift=0.5)
    np.testing.assert_allclose(back.patch_scores(x), fitted.patch_scores(x), rtol=1e-6)
    assert (back.threshold, back.reference, back.encoder, back.weights_hash) == (
        fitted.threshold,
        fitted.reference,
        "test-tiny",
        "abc",
    )
    assert back.provenance == json.loads(json.dumps(fitted.provenance))


def test_encoder_mismatch_is_refused(fitted, tmp_path):
    path = fitted.save(tmp_path / "dist.json")
    FeatureDistribution.load(path, encoder=SimpleNamespace(name="test-tiny", weights_hash="abc"))
    with pytest.raises(ValueError, match="fitted on 'test-tiny' features .*got 'embedded'"):
        FeatureDistribution.load(path, encoder=SimpleNamespace(name="embedded", weights_hash="abc"))
    with pytest.raises(ValueError, match="weights abc.*weights other"):
        FeatureDistribution.load(path, encoder=SimpleNamespace(name="test-tiny", weights_hash="other"))
    x = _correlated(np.random.default_rng(6), 10)
    feats = SlideFeatures(x, np.zeros((10, 2), np.int64), 224, 224, 0.5, 0.5, (100, 100), "test-tiny", "other")
    with pytest.raises(ValueError, match="Refit it"):
        fitted.slide_score(feats)


def test_damaged_or_foreign_file_is_refused(fitted, tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a feature distribution"):
        FeatureDistribution.load(tmp_path / "other.json")
    doc = json.loads(fitted.save(tmp_path / "dist.json").read_text())
    doc["dim"] = D + 1
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="damaged"):
        FeatureDistribution.load(tmp_path / "bad.json")


# -- the shipped distribution of the embedded encoder ---------------------------------------------
def test_shipped_distribution_is_small_and_belongs_to_the_embedded_encoder():
    pytest.importorskip("torch")
    from napari_pathalign.models.distribution import EMBEDDED_FILE
    from napari_pathalign.models.encoders import load_patch_encoder

    path = RESOURCES / EMBEDDED_FILE
    assert path.stat().st_size < 1_000_000
    encoder = load_patch_encoder("embedded", device="cpu")
    dist = load_embedded_distribution()
    assert (dist.encoder, dist.weights_hash, dist.dim) == ("embedded", encoder.weights_hash, encoder.dim)
    assert load_embedded_distribution(encoder).threshold == dist.threshold
    assert 0 < dist.threshold < 1 and dist.provenance["calibration_slides"] >= 20


@pytest.fixture(scope="module")
def embedded_scores(tmp_path_factory) -> dict[str, InDistribution]:
    pytest.importorskip("torch")
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide
    from napari_pathalign.models.encoders import load_patch_encoder

    encoder = load_patch_encoder("embedded", device="cpu")
    dist = load_embedded_distribution(encoder)
    cache = tmp_path_factory.mktemp("features")
    slides = {"skin": RESOURCES / "CMU-1-Small-Region.svs", "lymph node": RESOURCES / "demo-lymph-node.tif"}
    return {
        name: dist.slide_score(embed_slide(open_slide(path), encoder, GridConfig(), cache_dir=cache))
        for name, path in slides.items()
    }


def test_real_skin_biopsy_warns(embedded_scores):
    """CMU-1 is skin, a tissue the embedded model never saw (it drafted 'Colon, descending' for it)."""
    skin = embedded_scores["skin"]
    assert skin.warn and skin.score > skin.threshold and skin.n_patches > 20
    assert "unreliable" in skin.explanation and "lymph node" in skin.explanation


def test_demo_lymph_node_does_not_warn(embedded_scores):
    node = embedded_scores["lymph node"]
    assert not node.warn and node.score < node.threshold
    assert embedded_scores["skin"].score > node.score
    assert "resembles" in node.explanation


def test_shipped_file_names_its_data():
    doc = json.loads((RESOURCES / "embedded_feature_distribution.json").read_text())
    provenance = doc["provenance"]
    assert "train-split demo slides" in provenance["data"] and provenance["seed"] == 0
    assert provenance["fit_patches"] > 1000 and provenance["calibration_patches"] > 1000
