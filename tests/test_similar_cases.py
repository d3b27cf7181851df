"""Similar-case search end to end: demo slides from real tiles -> library (real FAISS, real SQLite)
-> slide / region / text queries from the CLI and from the Similar cases dock in a real viewer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.conftest import open_plugin_dock  # noqa: E402

TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiles"


@pytest.fixture(scope="module")
def models():
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign

    return PathAlign.load("embedded-r", device="cpu"), load_patch_encoder("embedded", device="cpu")


@pytest.fixture(scope="module")
def built(tmp_path_factory, models):
    """8 held-out demo slides (small grids) in a library, with reports, labels and sites."""
    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.demo.data import make_demo_data
    from napari_pathalign.engine.library_build import iter_build, model_identity
    from napari_pathalign.eval.evaluate import read_truth
    from napari_pathalign.index import Library

    root = tmp_path_factory.mktemp("similar")
    make_demo_data(
        TILES, root / "demo", slides=0, test_slides=8, grid=(10, 12), seed=0, splits=("test",), progress=False
    )
    data = root / "demo" / "test"
    rows, truths, texts = read_truth(data)
    table = {
        (data / r["slide"]).resolve(): {
            "report": x,
            "label": "tumour" if t.tumour_fraction > 0 else "no tumour",
            "site": r["source"],
        }
        for r, t, x in zip(rows, truths, texts)
    }
    model, encoder = models
    slides = [data / r["slide"] for r in rows]
    lib = Library.create(root / "lib", **model_identity(model, encoder))
    progress = []
    results = run_to_end(
        iter_build(slides, lib, model, encoder, GridConfig(), root / "features", table),
        lambda item: progress.append(item[0]),
    )
    lib.close()
    return {
        "root": root,
        "data": data,
        "rows": rows,
        "slides": slides,
        "results": results,
        "progress": progress,
        "lib": root / "lib",
        "features": root / "features",
    }


def test_build_adds_every_slide_with_its_metadata(built):
    from napari_pathalign.index import Library

    assert built["progress"] == list(range(9)) and all(not r.error for r in built["results"])
    with Library.open(built["lib"]) as lib:
        assert len(lib) == 8 and lib.info().reports_count == 8 and lib.repaired is None
        rec = lib.get(built["results"][0].id)
        assert rec.thumbnail_png.startswith(b"\x89PNG") and rec.report and rec.label in ("tumour", "no tumour")
        assert Path(rec.features_path).is_file() and rec.mpp == pytest.approx(float(built["rows"][0]["mpp"]))


def test_slide_region_and_text_queries(built, models):
    from napari_pathalign.engine.regions import rectangle
    from napari_pathalign.engine.similar import locate_region, slide_query, text_vector
    from napari_pathalign.index import Library
    from napari_pathalign.io import open_slide

    model, encoder = models
    with Library.open(built["lib"]) as lib, open_slide(built["slides"][0]) as slide:
        vec, side = slide_query(slide, model, encoder, built["features"])
        hits = lib.search(vec, k=3)
        assert (
            side is None
            and hits[0].path == str(built["slides"][0].resolve())
            and hits[0].score == pytest.approx(1, abs=1e-4)
        )
        assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score
        h0, w0 = slide.shape_level0
        region = rectangle(w0 * 0.25, h0 * 0.25, w0 * 0.5, h0 * 0.5)
        rvec, side = slide_query(slide, model, encoder, built["features"], region)
        ranked = locate_region(model, lib.search(rvec, k=4), rvec, side)
        assert side >= 2 and all(h.region_xywh is not None and h.region_score is not None for h in ranked)
        x, y, w, h = ranked[0].region_xywh
        assert w == h > 0 and 0 <= x < w0 and 0 <= y < h0
        reports = lib.search(vec, k=2, target="reports")
        assert reports[0].target == "reports" and reports[0].report
        texts = lib.search(text_vector(model, "metastatic carcinoma"), k=8, filters={"site": "pcam"})
        assert texts and all(t.site == "pcam" for t in texts)
        assert lib.search(vec, k=5, filters={"report_contains": "'; DROP TABLE slides; --"}) == []
        with pytest.raises(ValueError, match="empty"):
            text_vector(model, "  ")
        with pytest.raises(ValueError, match="no tissue patch"):
            slide_query(slide, model, encoder, built["features"], rectangle(0, 0, 5, 5))


def test_cli_index_commands(built, tmp_path, capsys):
    from napari_pathalign.cli import main

    lib, feats = str(built["lib"]), str(built["features"])
    assert main(["index", "info", lib]) == 0
    assert "EXACT_MAX" in capsys.readouterr().out
    assert (
        main(["index", "search", lib, "--slide", str(built["slides"][1]), "-k", "3", "--features", feats, "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert len(out["hits"]) == 3 and out["majority_vote"]["label"] in ("tumour", "no tumour")
    assert main(["index", "search", lib, "--text", "adipose tissue", "-k", "2"]) == 0
    assert (
        main(["index", "search", lib, "--slide", str(built["slides"][1]), "--region", "a,b", "--features", feats]) == 2
    )
    assert "x,y,w,h" in capsys.readouterr().err
    assert main(["index", "search", str(tmp_path), "--text", "x"]) == 2  # not a library
    assert "library" in capsys.readouterr().err
    # a new library from two slides, one of them unreadable: reported and skipped
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    rc = main(
        ["index", "build", str(built["slides"][2]), str(bad), "--out", str(tmp_path / "new"), "--features", feats]
    )
    printed = capsys.readouterr()
    assert rc == 1 and "skipped" in printed.out + printed.err and "1 of 2 slides added" in printed.out
    assert main(["index", "remove", str(tmp_path / "new"), str(built["slides"][2])]) == 0
    assert "0 slides left" in capsys.readouterr().out


def test_leave_one_out_evaluation(built, models):
    from napari_pathalign.eval.library_eval import evaluate_library

    model, encoder = models
    m = evaluate_library(model, encoder, built["data"], k=3, features_dir=built["features"], progress=False)
    assert m["slides"] == 8 and 0 <= m["majority_vote_tumour_at3"] <= 1 and 0 <= m["text_to_slide_precision_at3"] <= 1
    assert set(m["ci95"]) == {"majority_vote_tumour_at3", "majority_vote_dominant_at3", "text_to_slide_precision_at3"}
    with pytest.raises(ValueError, match="needs at least"):
        evaluate_library(model, encoder, built["data"], k=8, features_dir=built["features"], progress=False)


@pytest.fixture
def dock(make_napari_viewer, built, monkeypatch):
    return open_plugin_dock(
        make_napari_viewer, monkeypatch, built["slides"][0], "Similar cases", built["root"] / "cache"
    )


def _run(widget, qtbot, worker):
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=120000):
        pass
    qtbot.wait(50)


def test_dock_searches_reveals_and_opens_a_hit(dock, qtbot, built, output_dir):
    viewer, layer, widget = dock
    assert widget.search() is None and "Open or create a library" in widget.status.text()
    assert widget.open_library(built["lib"]) is not None and "8 slides" in widget.library_label.text()
    widget.educator.setChecked(True)
    _run(widget, qtbot, widget.search())
    assert len(widget.hits) == 5 and widget.results.count() == 5
    # the query's in-scope banner: a demo slide of an organ the shipped model was trained on is in scope
    scope = widget.scope_banner.scope
    assert scope is not None and widget.scope_banner.text() == scope.banner
    assert not scope.flagged and "NOT similar cases" not in widget.status.text()
    texts = [widget.results.item(i).text() for i in range(5)]
    assert all("hidden (educator mode)" in t for t in texts) and "hidden until Reveal" in widget.vote.text()
    widget.reveal_button.click()
    assert widget.hits[1].report[:40] in widget.results.item(1).text() and "agreement" in widget.vote.text()
    # region query: a drawn rectangle over the slide's middle; hits say where they match
    h0, w0 = layer.metadata["shape_level0"]
    corners = np.array([[h0 * 0.3, w0 * 0.3], [h0 * 0.7, w0 * 0.7]])
    shapes = viewer.add_shapes(
        [np.array([layer.data_to_world(c) for c in corners])], shape_type="rectangle", name="roi"
    )
    shapes.selected_data = {0}
    widget.mode.setCurrentIndex(1)
    _run(widget, qtbot, widget.search())
    assert widget.hits and widget.hits[0].region_xywh is not None, widget.status.text()
    opened = widget.open_hit(0)
    assert opened.extent.world[0][1] > layer.extent.world[1][1]  # beside the query slide, in µm
    assert np.allclose(opened.scale, layer.scale) and "matched region" in viewer.layers[-1].name
    # text search with a filter that matches nothing, and an empty text
    widget.mode.setCurrentIndex(2)
    widget.text.setText("")
    assert widget.search() is None and "Type a text" in widget.status.text()
    widget.text.setText("metastatic carcinoma")
    widget.filter_label.setText("no such label")
    _run(widget, qtbot, widget.search())
    assert widget.hits == [] and "No hits" in widget.status.text()
    viewer.fit_to_view()
    qtbot.wait(200)
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3]).save(
        output_dir / "similar-cases-dock.png"
    )


def test_dock_bad_library_and_adding_the_current_slide(dock, qtbot, built, tmp_path):
    viewer, layer, widget = dock
    assert widget.open_library(tmp_path) is None and widget.errors  # not a library: a message
    lib = widget.create_library(tmp_path / "mine")
    assert lib is not None and len(lib) == 0
    _run(widget, qtbot, widget.search())
    assert widget.hits == [] and "No hits" in widget.status.text()
    _run(widget, qtbot, widget.add_current_slide())
    assert len(widget.library) == 1 and "Added" in widget.status.text()
