"""Per-cell class maps of the demo slides, and the class make-up of square patches over them."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathalign.demo.data import FEATHER, KATHER_CLASSES, make_demo_data
from napari_pathalign.eval.class_maps import GLASS, ClassMap, class_map_path, patch_class_fractions, read_class_map
from napari_pathalign.io import open_slide
from napari_pathalign.train.tile_sources import LUNG_CLASSES

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiles"
RESOURCES = Path(__file__).resolve().parents[1] / "resources"
CLASSES = {"pcam": ["normal", "tumour"], "kather": KATHER_CLASSES, "lung": LUNG_CLASSES}
TILE = {"pcam": 96, "kather": 150, "lung": 224}
CELL = {k: t - t // FEATHER for k, t in TILE.items()}  # tiles overlap their neighbours by 1/FEATHER


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Small slides from the tile sources (seed 0)."""
    out = tmp_path_factory.mktemp("demo")
    make_demo_data(TILES, out, slides=3, test_slides=6, grid=(6, 8), seed=0, progress=False)
    return out


def slide_rows(demo):
    for split in ("train", "test"):
        with open(demo / split / "slides.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                yield demo / split / row["slide"], row


def looks_like_glass(cell: np.ndarray) -> bool:
    """Rendered glass is flat light grey (244 +- 2.5 noise); JPEG keeps it flat."""
    grey = cell.astype(np.float64).mean(axis=2)
    return 236 < grey.mean() < 250 and grey.std() < 4


def test_class_map_beside_every_slide_agrees_with_slides_csv(demo):
    sources = set()
    for slide, row in slide_rows(demo):
        assert class_map_path(slide).exists()
        cm = read_class_map(slide)
        src = row["source"]
        sources.add(src)
        assert cm.classes == CLASSES[src] and cm.cell_size_level0 == CELL[src]
        assert cm.mpp == pytest.approx(float(row["mpp"])) and cm.grid.shape == (6, 8)
        tissue = cm.grid[cm.grid != GLASS]
        from_map = {cm.classes[i]: round(float(np.mean(tissue == i)), 4) for i in np.unique(tissue)}
        assert from_map == json.loads(row["fractions"])
        tumour = [cm.classes.index(c) for c in {"pcam": ["tumour"], "kather": ["TUMOR"]}.get(src, LUNG_CLASSES[:2])]
        assert np.isin(tissue, tumour).mean() == pytest.approx(float(row["tumour_fraction"]), abs=1e-4)
    assert len(sources) >= 2  # the fixture covers several layouts


def test_rendered_pixels_follow_the_class_map(demo):
    for slide, _ in slide_rows(demo):
        cm = read_class_map(slide)
        # margin: a tile is feathered half its overlap (a third of the cell) into its neighbours, and JPEG
        # blocks bleed across the cell edges
        s = cm.cell_size_level0
        m = s // 6 + 8
        with open_slide(slide) as sl:
            assert tuple(sl.shape_level0) == cm.shape_level0  # the grid covers the whole slide
            h, w = cm.shape_level0
            rgb = sl.read_region((0, 0), (w, h))
        assert rgb.shape == (h, w, 3)
        glass = np.array(
            [
                [
                    looks_like_glass(rgb[r * s + m : (r + 1) * s - m, c * s + m : (c + 1) * s - m])
                    for c in range(cm.grid.shape[1])
                ]
                for r in range(cm.grid.shape[0])
            ]
        )
        on_glass = cm.grid == GLASS
        assert glass[on_glass].all(), f"{slide.name}: a cell the map calls glass holds tissue"
        # a few real tiles are nearly blank (PCam normal), so tissue is checked in bulk
        assert (~glass[~on_glass]).mean() >= 0.9, f"{slide.name}: cells the map calls tissue look like glass"


def test_read_class_map_takes_the_json_path_and_explains_a_missing_map(demo, tmp_path):
    slide = next(iter(slide_rows(demo)))[0]
    a, b = read_class_map(slide), read_class_map(class_map_path(slide))
    assert np.array_equal(a.grid, b.grid) and a.classes == b.classes
    with pytest.raises(FileNotFoundError, match="no class map"):
        read_class_map(tmp_path / "other.tif")


@pytest.mark.slow
def test_demo_slides_are_the_same_for_a_seed(tmp_path):
    """A seed makes the same slides, byte for byte, and class maps of the default grid."""
    for run in ("a", "b"):
        make_demo_data(TILES, tmp_path / run, slides=0, seed=0, splits=("test",), test_slides=3, progress=False)
    made = sorted((tmp_path / "a" / "test" / "slides").glob("*.tif"))
    assert made and all(m.read_bytes() == (tmp_path / "b" / "test" / "slides" / m.name).read_bytes() for m in made)
    assert read_class_map(made[0]).grid.shape == (16, 22)


# hand-made map, 10-px cells:   a b .
#                               c a b
HAND = ClassMap(np.array([[0, 1, GLASS], [2, 0, 1]]), ["a", "b", "c"], 10)


def test_patch_exactly_on_one_cell():
    f = patch_class_fractions(HAND, np.array([[0, 10], [20, 0]]), 10)
    assert f.shape == (2, 3)
    np.testing.assert_allclose(f, [[0, 0, 1], [0, 0, 0]])  # cell (1, 0) is c; cell (0, 2) is glass


def test_patch_straddling_four_cells():
    centred = patch_class_fractions(HAND, np.array([[5, 5]]), 10)
    np.testing.assert_allclose(centred, [[0.5, 0.25, 0.25]])
    # off-centre, so swapping x and y would give another answer: x 12..22, y 4..14
    # (0,1)=b 8x6, (0,2)=glass 2x6, (1,1)=a 8x4, (1,2)=b 2x4
    f = patch_class_fractions(HAND, np.array([[12, 4]]), 10)
    np.testing.assert_allclose(f, [[0.32, 0.56, 0.0]])
    assert f.sum() == pytest.approx(0.88)  # the rest is on glass


def test_patch_partly_off_the_grid():
    f = patch_class_fractions(HAND, np.array([[-5, 15], [25, 15], [100, 100]]), 10)
    np.testing.assert_allclose(f, [[0, 0, 0.25], [0, 0.25, 0], [0, 0, 0]])


def test_fractions_equal_counting_pixels():
    rng = np.random.default_rng(0)
    pixels = np.kron(HAND.grid, np.ones((10, 10), dtype=np.int64))  # (20, 30) class per level-0 pixel
    xy = rng.integers(-12, 32, size=(200, 2))
    sizes = rng.integers(1, 25, size=200)
    f = patch_class_fractions(HAND, xy, sizes)
    for (x, y), s, row in zip(xy, sizes, f):
        ys, xs = np.arange(y, y + s), np.arange(x, x + s)
        ys, xs = ys[(ys >= 0) & (ys < 20)], xs[(xs >= 0) & (xs < 30)]
        patch = pixels[np.ix_(ys, xs)]
        np.testing.assert_allclose(row, [(patch == k).sum() / s**2 for k in range(3)])


def test_fractions_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        patch_class_fractions(HAND, np.zeros((3, 3)), 10)
    with pytest.raises(ValueError, match="positive"):
        patch_class_fractions(HAND, np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match="one per patch"):
        patch_class_fractions(HAND, np.zeros((2, 2)), [10, 10, 10])
    assert patch_class_fractions(HAND, np.zeros((0, 2)), 10).shape == (0, 3)
