"""Demo slides from the real labelled tiles in ../shared/data/tiles."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_pathalign.cli import main
from napari_pathalign.io import open_slide
from napari_pathalign.train.dataset import load_pairs
from napari_pathalign.train.tile_sources import find_sources, kather_source_image

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiles"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo-data", "--tiles", str(TILES), "--out", str(out), "--slides", "10", "--seed", "3"]) == 0
    return out


def rows(folder):
    with open(folder / "slides.csv") as fh:
        return list(csv.DictReader(fh))


def test_kather_split_never_shares_a_source_image():
    sources = {s.split: s for s in find_sources(TILES / "kather2016", seed=0)}
    keys = {
        split: {kather_source_image(p.name) for paths in s.tiles.values() for p in paths}
        for split, s in sources.items()
    }
    assert keys["train"] and keys["test"] and not keys["train"] & keys["test"]
    assert kather_source_image("10009_CRC-Prim-HE-03_009.tif_Row_301_Col_151.tif") == "CRC-Prim-HE-03_009"
    pcam = {s.split for s in find_sources(TILES / "pcam")}
    assert pcam == {"train", "test"}  # PCam: train/ trains, valid/ tests


def test_slides_open_in_our_reader_and_openslide_with_mpp(demo):
    import openslide

    truth = rows(demo / "train")
    assert len(truth) == 10 and len(rows(demo / "test")) >= 3
    for row in truth[:3]:
        path = demo / "train" / row["slide"]
        with open_slide(path) as s:
            assert s.mpp == pytest.approx(float(row["mpp"]), rel=1e-3) and s.n_stored_levels >= 2
            thumb = np.asarray(s.thumbnail(256))
        o = openslide.OpenSlide(str(path))
        assert o.level_count >= 2 and float(o.properties["openslide.mpp-x"]) == pytest.approx(
            float(row["mpp"]), rel=1e-3
        )
        white = (thumb.min(axis=2) > 230).mean()
        assert 0.2 < white < 0.8  # tissue on glass, not a full rectangle


def test_ground_truth_and_reports_agree(demo):
    for split in ("train", "test"):
        truth = {r["slide"]: r for r in rows(demo / split)}
        pairs, unmatched = load_pairs(demo / split / "reports.jsonl")
        assert not unmatched and len(pairs) == len(truth)  # every slide gets its own part
        for pair in pairs:
            t = truth[str(pair.slide.relative_to(demo / split))]
            fractions = json.loads(t["fractions"])
            assert abs(sum(fractions.values()) - 1) < 1e-3
            text = pair.text.lower()
            says_tumour = (
                "no " not in text.split(":", 1)[1][:40] and "negative" not in text and "benign lymph node" not in text
            )
            assert says_tumour == bool(int(t["tumour_present"])), (t, pair.text)
            if int(t["tumour_present"]):
                assert f"{round(float(t['tumour_fraction']) * 100)}%" in pair.text


def test_deterministic_for_a_seed(demo, tmp_path):
    assert (
        main(
            [
                "demo-data",
                "--tiles",
                str(TILES / "kather2016"),
                "--out",
                str(tmp_path / "a"),
                "--slides",
                "3",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "demo-data",
                "--tiles",
                str(TILES / "kather2016"),
                "--out",
                str(tmp_path / "b"),
                "--slides",
                "3",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    for split in ("train", "test"):
        assert (tmp_path / "a" / split / "slides.csv").read_text() == (
            tmp_path / "b" / split / "slides.csv"
        ).read_text()
        assert (tmp_path / "a" / split / "reports.jsonl").read_text() == (
            tmp_path / "b" / split / "reports.jsonl"
        ).read_text()


def test_bad_tiles_folder(tmp_path, capsys):
    assert main(["demo-data", "--tiles", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no tile sets" in capsys.readouterr().err
