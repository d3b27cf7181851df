"""LC25000 is split by source-tile cluster, and the shipped model never saw a held-out cluster."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest

from napari_pathalign.train.tile_sources import LUNG_CLASSES, find_sources, lung_clusters, lung_split
from tests.conftest import SHARED_DATA

LUNG = SHARED_DATA / "tiles" / "lc25000_lung"


def _sides() -> dict[str, set]:
    if not LUNG.is_dir():
        pytest.fail(f"the LC25000 lung tiles are not at {LUNG}; clone the project with ../shared beside it")
    clusters = lung_clusters(LUNG)
    side: dict[str, set] = {}
    for split, classes in lung_split(LUNG, 0).items():
        for c, paths in classes.items():
            for p in paths:
                side.setdefault(clusters[f"{c}/{p.name}"], set()).add(split)
    return side


def test_no_cluster_is_in_both_train_and_test():
    side = _sides()
    assert all(len(s) == 1 for s in side.values())  # each original (with its rotated copies) on one side only
    test = {k for k, s in side.items() if s == {"test"}}
    assert 0.2 < len(test) / len(side) < 0.45  # about a third held out
    split = lung_split(LUNG, 0)
    assert all(split[s][c] for s in ("train", "test") for c in LUNG_CLASSES)  # every class on both sides
    sources = {s.split: s for s in find_sources(SHARED_DATA / "tiles", 0) if s.kind == "lung"}
    assert {p.name for ps in sources["test"].tiles.values() for p in ps} == {
        p.name for ps in split["test"].values() for p in ps
    }  # the demo slides' test tiles are exactly the held-out clusters


def test_the_shipped_model_was_trained_on_train_clusters_only():
    doc = json.loads((files("napari_pathalign.resources") / "embedded_training_data.json").read_text())
    side = _sides()
    trained = set(doc["lung_train_clusters"])
    assert trained and not trained & {k for k, s in side.items() if s == {"test"}}
    assert trained == {k for k, s in side.items() if s == {"train"}}


def test_a_second_test_set_drawn_with_another_seed_keeps_the_held_out_split(tmp_path, monkeypatch):
    """make_demo_data(seed=5) draws other slides from the same held-out clusters: the seed that draws the slides
    once also chose the split, and a 'second held-out set' then held 122 of its 188 tiles from training."""
    import napari_pathalign.demo.data as data

    used = []
    render = data.render

    def spy(cells, src, rng):
        used.extend(p for paths in src.tiles.values() for p in paths)
        return render(cells, src, rng)

    monkeypatch.setattr(data, "render", spy)
    data.make_demo_data(
        SHARED_DATA / "tiles",
        tmp_path,
        slides=0,
        seed=5,
        splits=("test",),
        test_slides=2,
        grid=(4, 5),
        progress=False,
        kinds=("lung",),
    )
    held_out = {p for paths in lung_split(LUNG, 0)["test"].values() for p in paths}
    trained = {p for paths in lung_split(LUNG, 0)["train"].values() for p in paths}
    assert used and set(used) <= held_out and not set(used) & trained


def test_the_claim_checkers_two_parts_of_the_train_tiles_share_no_source():
    """The measurement head is fitted on part 0 and its errors on part 1: no source image, cluster or tile in both."""
    from napari_pathalign.train.tile_sources import keep_part, source_unit

    clusters = lung_clusters(LUNG)
    for source in (s for s in find_sources(SHARED_DATA / "tiles", 0) if s.split == "train"):
        units = []
        for k in (0, 1):
            part = keep_part(source, (k, 2))
            paths = [p for ps in part.tiles.values() for p in ps]
            units.append({source_unit(source.kind, p, clusters) for p in paths})
            assert all(len(v) >= 2 for v in part.tiles.values())
        assert units[0] and units[1] and not units[0] & units[1], source.kind
        whole = {source_unit(source.kind, p, clusters) for ps in source.tiles.values() for p in ps}
        assert units[0] | units[1] == whole  # the two parts are the whole split
    with pytest.raises(ValueError, match="part must be"):
        keep_part(source, (2, 2))
