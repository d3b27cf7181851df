"""Heatmap: the three normalisations and the raster's placement over the slide in napari's world."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathalign.core.heatmap import Heatmap

MPP, S = 0.5, 100


def _heatmap(values, rc=None, mpp=MPP) -> Heatmap:
    """Patches on the lattice cells ``rc`` (row, col), by default a row of cells from (0, 0)."""
    values = np.asarray(values, np.float32)
    rc = np.stack([np.zeros(len(values)), np.arange(len(values))], 1) if rc is None else np.asarray(rc)
    xy = np.stack([rc[:, 1], rc[:, 0]], 1).astype(np.int64) * S  # (N, 2) top-left (x, y)
    return Heatmap(values, xy, S, mpp, "attention", "attention of head 0")


@pytest.fixture
def sparse() -> Heatmap:
    """Five patches in a 3 x 4 box whose corner is at lattice (2, 3), with holes in it."""
    rc = np.array([[2, 3], [2, 6], [3, 4], [4, 3], [4, 5]])
    return _heatmap([0.1, 0.9, 0.5, -2.0, 7.0], rc)


def test_percentile_clips_outliers_into_unit_range():
    v = np.r_[np.linspace(0, 1, 101), 1000.0, -1000.0]
    h = _heatmap(v).normalised("percentile")
    lo, hi = np.percentile(v, [1, 99])
    assert h.normalisation == "percentile" and h.values.dtype == np.float32
    assert h.values.min() == 0.0 and h.values.max() == 1.0
    assert h.values[-2] == 1.0 and h.values[-1] == 0.0  # the outliers are clipped, not stretching the scale
    np.testing.assert_allclose(h.values[:101], np.clip((v[:101] - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert 0.1 < h.values[50] < 0.9  # the bulk keeps its spread


def test_percentile_of_a_constant_map_is_mid_grey_and_nan_stays_nan():
    h = _heatmap([3.0, 3.0, np.nan]).normalised("percentile")
    np.testing.assert_array_equal(h.values[:2], [0.5, 0.5])
    assert np.isnan(h.values[2])


def test_rank_is_uniform_over_finite_patches():
    rng = np.random.default_rng(0)
    v = rng.lognormal(size=50).astype(np.float32)
    v[[3, 17]] = np.nan
    h = _heatmap(v).normalised("rank")
    finite = np.isfinite(v)
    np.testing.assert_allclose(np.sort(h.values[finite]), np.linspace(0, 1, finite.sum()), atol=1e-6)
    assert np.isnan(h.values[~finite]).all()
    assert np.array_equal(np.argsort(h.values[finite]), np.argsort(v[finite]))  # order kept


def test_rank_gives_ties_the_same_value():
    h = _heatmap([1.0, 2.0, 2.0, 3.0]).normalised("rank")
    np.testing.assert_allclose(h.values, [0, 0.5, 0.5, 1])


def test_raw_is_identity():
    v = [0.3, -1.0, 5.0]
    h = _heatmap(v)
    np.testing.assert_array_equal(h.normalised("raw").values, np.float32(v))
    np.testing.assert_array_equal(h.raw_values, np.float32(v))


def test_normalising_twice_starts_from_raw_values():
    v = np.array([0.0, 1.0, 2.0, 100.0], np.float32)
    h = _heatmap(v)
    twice = h.normalised("percentile").normalised("rank")
    np.testing.assert_array_equal(twice.values, h.normalised("rank").values)
    np.testing.assert_array_equal(twice.raw_values, v)
    np.testing.assert_array_equal(h.normalised("rank").normalised("raw").values, v)
    assert h.normalised("rank").title == "attention of head 0 [rank]"


def test_bad_normalisation_and_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="expected one of"):
        _heatmap([1.0]).normalised("zscore")
    with pytest.raises(ValueError, match="one value per patch"):
        Heatmap(np.zeros(3), np.zeros((2, 2)), S, MPP, "text", "x")


def test_raster_pixel_centres_are_patch_centres_in_world_coordinates(sparse):
    r = sparse.raster()
    assert r.units == "µm" and r.scale == (S * MPP, S * MPP)
    assert r.origin_rc == (2, 3) and r.image.shape == (3, 4)
    for (x, y), v in zip(sparse.xy_level0, sparse.values):
        idx = np.array([y // S, x // S]) - r.origin_rc  # raster (row, col) of this patch
        world = np.asarray(r.translate) + idx * np.asarray(r.scale)
        # napari puts level-0 pixel i's centre at i * mpp; the patch spans pixels [x, x + S)
        np.testing.assert_allclose(world, [(y + S / 2 - 0.5) * MPP, (x + S / 2 - 0.5) * MPP])
        assert r.image[idx[0], idx[1]] == v


def test_raster_is_nan_where_there_is_no_patch(sparse):
    image = sparse.raster().image
    assert image.dtype == np.float32
    assert np.isfinite(image).sum() == len(sparse)
    assert np.isnan(image[0, 1]) and np.isnan(image[1, 0])


def test_raster_without_mpp_is_in_pixels(sparse):
    h = Heatmap(sparse.values, sparse.xy_level0, S, None, "text", "x")
    r = h.raster()
    assert r.units == "pixel" and r.scale == (S, S)
    assert r.translate == (2 * S + S / 2 - 0.5, 3 * S + S / 2 - 0.5)


def test_raster_of_an_empty_heatmap_raises():
    with pytest.raises(ValueError, match="no patches"):
        Heatmap(np.zeros(0), np.zeros((0, 2)), S, MPP, "text", "x").raster()


def test_value_at_finds_the_patch_under_a_point(sparse):
    x, y = sparse.xy_level0[2]
    assert sparse.value_at((x, y)) == (2, pytest.approx(0.5))
    assert sparse.value_at((x + S - 0.5, y + S - 0.5)) == (2, pytest.approx(0.5))
    assert sparse.value_at((x + S, y)) is None  # right edge is exclusive; lattice (3, 5) is a hole
    assert sparse.value_at((0, 0)) is None


def test_top_patches_puts_nan_last():
    h = _heatmap([0.2, np.nan, 0.9, 0.5])
    assert h.top_patches(3).tolist() == [2, 3, 0]
