"""The showcase slide `make demo` opens: one section from held-out tiles, in one stain, on glass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SHARED_DATA


def test_showcase_slide_is_one_section_on_glass(tmp_path):
    from PIL import Image

    from napari_pathalign.demo.showcase import GLASS_MARGIN, make_showcase_slide, mostly_tissue, stain_match
    from napari_pathalign.eval.class_maps import read_class_map
    from napari_pathalign.io import open_slide
    from napari_pathalign.train.tile_sources import find_sources

    tiles = SHARED_DATA / "tiles"
    if not tiles.is_dir():
        pytest.fail(f"the shared tiles are not at {tiles}; clone the project with ../shared beside it")
    path = make_showcase_slide(tiles, tmp_path, "pcam", grid=(14, 18))
    assert make_showcase_slide(tiles, tmp_path, "pcam", grid=(14, 18)) == path  # built once, then reused
    slide = open_slide(path)
    assert slide.mpp == pytest.approx(0.972)
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    assert sum(truth["fractions"].values()) == pytest.approx(1, abs=1e-3) and truth["fractions"].get("tumour", 0) > 0
    cmap = read_class_map(path)
    assert (np.asarray(cmap.grid)[:GLASS_MARGIN] == -1).all()  # glass all round the section
    corner = np.asarray(slide.read_region((0, 0), (40, 40)))[..., :3]
    assert corner.min() > 225  # glass, not tissue, at the slide's corner
    # the stain match brings tiles of many patients to one colour: their mean colours spread less
    src = mostly_tissue(
        next(s for s in find_sources(tiles, 0) if s.kind == "pcam" and s.split == "test"),
        np.random.default_rng(0),
        per_class=40,
    )
    match = stain_match(src, np.random.default_rng(1), sample=40)
    raw = [np.asarray(Image.open(p).convert("RGB")) for p in src.tiles["normal"][:30]]
    spread_raw = np.std([t.reshape(-1, 3).mean(0) for t in raw], axis=0).mean()
    spread_matched = np.std([match(t).reshape(-1, 3).mean(0) for t in raw], axis=0).mean()
    assert spread_matched < 0.6 * spread_raw
