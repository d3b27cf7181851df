"""The PathAlign workspace dock driven in a real napari viewer (Xvfb) on the real demo lymph node."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_pathalign._napari.preferences import PLUGIN  # noqa: E402
from tests.conftest import open_plugin_dock  # noqa: E402

DEMO = str(files("napari_pathalign.resources") / "demo-lymph-node.tif")


@pytest.fixture
def dock(make_napari_viewer, tmp_path, monkeypatch):
    return open_plugin_dock(make_napari_viewer, monkeypatch, DEMO, "PathAlign workspace", tmp_path / "cache")


def _analyse(widget, qtbot):
    worker = widget.analyse()
    assert worker is not None and widget.cancel_button.isEnabled() and not widget.analyse_button.isEnabled()
    with qtbot.waitSignal(worker.finished, timeout=120000):
        pass
    qtbot.waitUntil(lambda: widget.analysis is not None and widget.analysis.ready, timeout=10000)
    return widget.analysis


def test_analyse_then_text_attention_zero_shot_export(dock, qtbot, tmp_path, output_dir):
    viewer, layer, widget = dock
    assert not widget.tabs.isEnabled()
    assert _analyse(widget, qtbot).ready
    box = widget.zero_shot.set_box  # the zero-shot sets come from the model's report ontology
    ontology = json.loads((files("napari_pathalign.resources") / "embedded_ontology.json").read_text())
    organs = [o["name"] for o in ontology["organs"]]
    assert [box.itemText(k) for k in range(box.count())] == ["diagnosis", *organs]
    assert widget.tabs.isEnabled() and "patches analysed on cpu" in widget.status.text()
    assert widget.progress.value() == widget.progress.maximum()
    # text -> region: typed like a user, shown as an image layer aligned with the slide in µm
    widget.text.text.setText("metastatic carcinoma")
    widget.text.show_button.click()
    qtbot.waitUntil(lambda: widget.heatmap_layer is not None, timeout=20000)
    hm = widget.heatmap_layer
    raw_rows = hm.data.shape[0]
    assert "metastatic carcinoma" in hm.name and "[raw]" in hm.name and hm.units[0] == layer.units[0]
    shown = hm.metadata["pathalign_heatmap"]
    # a patch's value sits over that patch: world centre of patch i -> heatmap data pixel holding value i
    for i in (0, len(shown) // 2, len(shown) - 1):
        x, y = shown.xy_level0[i] + shown.size_level0 / 2 - 0.5
        world = layer.data_to_world((y, x))
        r, c = np.round(hm.world_to_data(world)).astype(int)
        assert hm.data[r, c] == pytest.approx(shown.values[i])
        assert np.allclose(layer.world_to_data(world), (y, x))
    assert np.isnan(hm.data).any()  # glass: transparent, no value
    # clicking a point reads that patch's value
    i = 3
    x, y = shown.xy_level0[i] + 5
    event = type("E", (), {"position": layer.data_to_world((y, x))})()
    widget._on_click(viewer, event)
    assert f"({shown.xy_level0[i][0]}, {shown.xy_level0[i][1]})" in widget.readout.text()
    # normalisation and smoothing restyle the same map, named honestly
    widget.normalisation.setCurrentText("rank")
    assert "[rank]" in widget.heatmap_layer.name and np.nanmax(widget.heatmap_layer.data) == pytest.approx(1)
    widget.smoothed.setChecked(True)
    assert "smoothed, cosmetic" in widget.heatmap_layer.name and widget.heatmap_layer.data.shape[0] > raw_rows
    widget.smoothed.setChecked(False)
    widget.normalisation.setCurrentText("raw")
    assert sum("metastatic" in lyr.name for lyr in viewer.layers) == 1  # replaced, not piled up
    # attention explorer: the gallery holds 32 queries; clicking one shows it
    assert len(widget.attention.tiles) == 32
    widget.attention.tiles[7].click()
    assert "query 7" in widget.heatmap_layer.name
    widget.attention.mode.setCurrentIndex(1)
    widget.attention.show_button.click()
    assert "weighted by 'metastatic carcinoma'" in widget.heatmap_layer.name
    # zero-shot: bars per class, clicking a class shows its map
    worker = widget.run_zero_shot(widget.zero_shot.classes())
    with qtbot.waitSignal(worker.finished, timeout=20000):
        pass
    qtbot.waitUntil(lambda: len(widget.zero_shot.bar_widgets) == 2, timeout=5000)
    widget.zero_shot.bar_widgets["tumour"].click()
    assert "P(tumour)" in widget.heatmap_layer.name
    # exports: written, and an existing file is not replaced without asking
    out = tmp_path / "map.geojson"
    assert widget.export(out) == out and json.loads(out.read_text())["type"] == "FeatureCollection"
    before = out.read_bytes()
    widget.confirm_overwrite = lambda path: False
    widget.text.show_requested.emit("adipose tissue")
    qtbot.waitUntil(lambda: "adipose" in widget.heatmap_layer.name, timeout=20000)
    assert widget.export(out) is None and out.read_bytes() == before and "kept" in widget.status.text()
    widget.confirm_overwrite = lambda path: True
    assert widget.export(out) == out and out.read_bytes() != before
    assert widget.export(tmp_path / "map.png").stat().st_size > 1000
    widget.text.show_requested.emit("metastatic carcinoma")
    qtbot.waitUntil(lambda: "metastatic" in widget.heatmap_layer.name, timeout=20000)
    viewer.layers.selection.active = layer
    viewer.fit_to_view(layers=[layer])
    qtbot.wait(300)
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3]).save(output_dir / "workspace-dock.png")


def test_empty_phrase_and_analyse_first_messages(dock, qtbot):
    viewer, layer, widget = dock
    widget.show_text("metastatic carcinoma")
    assert "Analyse first" in widget.status.text()
    _analyse(widget, qtbot)
    widget.text.text.setText("   ")
    widget.text.show_button.click()
    assert "Type a phrase" in widget.status.text() and widget.heatmap_layer is None


def test_slide_without_mpp_is_refused_in_the_dock(dock, qtbot, wsi_dir):
    viewer, _, widget = dock
    layer = viewer.open(str(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs"), plugin=PLUGIN)[0]
    viewer.layers.selection.active = layer
    assert widget.analyse() is None
    assert "microns-per-pixel" in widget.status.text() and widget.errors


@pytest.mark.parametrize(
    "field,value,expect",
    [
        ("model", "not-a-folder", "not a PathAlign checkpoint"),
        ("encoder", "test-tiny", "pick 'embedded' as the encoder"),
    ],
)
def test_bad_model_or_encoder_is_a_message_not_a_crash(dock, qtbot, field, value, expect):
    viewer, layer, widget = dock
    if field == "encoder":
        widget.encoder.addItem("test-tiny")
    getattr(widget, field).setCurrentText(value)
    worker = widget.analyse()
    qtbot.waitUntil(lambda: expect in widget.status.text(), timeout=60000)
    qtbot.waitUntil(lambda: widget.analyse_button.isEnabled(), timeout=5000)
    assert widget.analysis is None and widget.errors and worker is not None


def test_cancel_and_closing_the_layer_mid_job(dock, qtbot):
    viewer, layer, widget = dock
    worker = widget.analyse()
    qtbot.waitUntil(
        lambda: widget.progress.value() > 0 or "Embedding" in widget.status.text() or "Models" in widget.status.text(),
        timeout=60000,
    )
    widget.cancel_button.click()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: "Cancelled" in widget.status.text() or widget.analysis is not None, timeout=5000)
    if "Cancelled" in widget.status.text():
        assert widget.analysis is None
    # again, and close the slide layer while it runs: the result is dropped, napari goes on
    worker = widget.analyse()
    viewer.layers.remove(layer)
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    assert "closed" in widget.status.text()
    assert widget.registry.get(layer.metadata["slide"]) is None
    layer2 = viewer.open(DEMO, plugin=PLUGIN)[0]  # napari still works; the dock follows the new layer
    viewer.layers.selection.active = layer2
    assert "demo-lymph-node" in widget.slide_label.text()


def test_switching_layers_mid_job_keeps_the_result_with_its_slide(dock, qtbot, wsi_dir):
    viewer, layer, widget = dock
    other = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=PLUGIN)[0]
    viewer.layers.selection.active = layer
    worker = widget.analyse()
    viewer.layers.selection.active = other  # the user looks elsewhere while it runs
    with qtbot.waitSignal(worker.finished, timeout=120000):
        pass
    assert widget.analysis is None  # the selected slide (CMU-1) was not analysed
    viewer.layers.selection.active = layer
    assert widget.analysis is not None and widget.analysis.ready and widget.tabs.isEnabled()
