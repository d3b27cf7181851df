"""The detection pyramid: which pixels an outline and a dot take, tiles that agree with the whole, bad input."""

import numpy as np
import pytest

from napari_pathalign.tiling.detection_raster import COARSEST_PX, DetectionRaster


def _raster(rings, colours, h=4000, w=3000):
    xy = np.concatenate([np.asarray(r, float) for r in rings])
    starts = np.concatenate([[0], np.cumsum([len(r) for r in rings])])
    return DetectionRaster(xy, starts, np.asarray(colours, np.uint8), h, w)


def test_an_open_square_is_drawn_closed_on_the_pixels_its_edges_cross():
    square = [(10, 20), (30, 20), (30, 40), (10, 40)]  # not closed: the last edge wraps round to the first vertex
    raster = _raster([square], [(0, 200, 0, 255)])
    tile = raster.tile(0, (0, 64), (0, 64))
    drawn = tile[..., 3] > 0
    want = np.zeros((64, 64), bool)
    want[20, 10:31] = want[40, 10:31] = want[20:41, 10] = want[20:41, 30] = True
    np.testing.assert_array_equal(drawn, want)
    assert (tile[drawn] == (0, 200, 0, 255)).all()


def test_zoomed_out_a_cell_is_a_dot_at_its_centre_in_its_class_colour():
    ring = 5 * np.stack([np.cos(np.linspace(0, 6.28, 12)), np.sin(np.linspace(0, 6.28, 12))], 1)
    small, wide = ring * 0.3 + (1002, 2002), ring + (2502, 102)  # 3 and 10 level-0 pixels across
    raster = _raster([small, wide], [(255, 0, 0, 255), (0, 0, 255, 255)])
    level = raster.levels - 1
    f = 2**level
    assert max(raster.level_shape(level)) <= COARSEST_PX < max(raster.level_shape(level - 1))
    h, w = raster.level_shape(level)
    tile = raster.tile(level, (0, h), (0, w))
    assert tuple(tile[2000 // f, 1000 // f]) == (255, 0, 0, 255)
    assert tuple(tile[100 // f, 2500 // f]) == (0, 0, 255, 255)
    assert f == 4 and (tile[..., 3] > 0).sum() == 1 + 5, "under 2 pixels wide a dot is 1 pixel, else a plus of 5"


def test_the_pyramid_levels_index_like_numpy_arrays_of_their_tiles():
    rng = np.random.default_rng(1)
    ring = 8 * np.stack([np.cos(np.linspace(0, 6.28, 20)), np.sin(np.linspace(0, 6.28, 20))], 1)
    rings = [ring + c for c in rng.uniform(10, 2990, (300, 2))]
    raster = _raster(rings, rng.integers(0, 255, (300, 4)))
    pyramid = raster.pyramid()
    assert len(pyramid) == raster.levels and pyramid[0].shape == (4000, 3000, 4) and pyramid[0].dtype == np.uint8
    for level in range(raster.levels):
        h, w = raster.level_shape(level)
        whole = raster.tile(level, (0, h), (0, w))
        assert whole[..., 3].any()
        np.testing.assert_array_equal(np.asarray(pyramid[level]), whole)
        for key in [
            (slice(100, 700), slice(150, 740)),
            (slice(None, None, 3), slice(5, -5, 2)),
            (7, slice(None)),
            (slice(10, 20), -1, 3),
            (Ellipsis, 0),
            (slice(50, 50), slice(None)),
        ]:
            np.testing.assert_array_equal(pyramid[level][key], whole[key], err_msg=f"level {level}, {key}")
    with pytest.raises(IndexError):
        pyramid[0][4000, 0]


def test_bad_input_is_refused_in_words():
    with pytest.raises(ValueError, match="colours"):
        _raster([[(0, 0), (1, 1), (2, 0)]], [(1, 2, 3)])
    with pytest.raises(ValueError, match="at least one vertex"):
        DetectionRaster(np.zeros((3, 2)), np.array([0, 3, 3]), np.zeros((2, 4)), 10, 10)
