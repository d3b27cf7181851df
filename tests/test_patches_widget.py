"""The Patches dock in a real viewer: preview tissue and grid, embed in a worker, cancel."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_pathalign._napari.preferences import PLUGIN  # noqa: E402


@pytest.fixture
def dock(make_napari_viewer, wsi_dir, tmp_path):
    viewer = make_napari_viewer(show=True)
    layer = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=PLUGIN)[0]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Patches")
    viewer.layers.selection.active = layer
    widget.encoder.value = "test-tiny"
    widget.cache_dir.value = str(tmp_path / "cache")
    return viewer, layer, widget


def test_preview_adds_aligned_tissue_and_grid_layers(dock, qtbot, output_dir):
    viewer, layer, widget = dock
    worker = widget.preview()
    with qtbot.waitSignal(worker.finished, timeout=20000):
        pass
    qtbot.waitUntil(lambda: f"{layer.name} patches" in viewer.layers, timeout=5000)
    tissue, patches = viewer.layers[f"{layer.name} tissue"], viewer.layers[f"{layer.name} patches"]
    # all three layers cover the same physical extent (µm), within one mask pixel
    np.testing.assert_allclose(tissue.extent.world[1][:2], layer.extent.world[1][:2], atol=2 * tissue.scale[0])
    assert 20 < len(patches.data) < 200 and "patches" in widget.status.value
    assert np.isclose(patches.size[0], 224 * 0.5 / 0.499 * 0.499, rtol=0.01)  # 224 px at 0.5 µm = 112 µm
    viewer.layers.selection.active = layer
    qtbot.wait(200)
    from PIL import Image

    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3]).save(output_dir / "patches-dock.png")


def test_embed_runs_in_a_worker_with_progress(dock, qtbot):
    viewer, layer, widget = dock
    widget.patch_size.value, widget.target_mpp.value = 64, 1.0
    worker = widget.embed()
    assert widget.cancel_button.enabled and not widget.embed_button.enabled
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    qtbot.waitUntil(lambda: widget.features is not None, timeout=5000)
    assert widget.progress.value == widget.progress.max == len(widget.features.features) > 20
    assert widget.features.features.shape[1] == 32 and "embedded" in widget.status.value
    assert widget.embed_button.enabled and not widget.cancel_button.enabled


def test_cancel_stops_and_caches_nothing(dock, qtbot, tmp_path):
    viewer, layer, widget = dock
    widget.patch_size.value, widget.target_mpp.value = 32, 0.5  # many small patches: time to cancel
    worker = widget.embed()
    qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=30000)
    with qtbot.waitSignal(worker.finished, timeout=30000):  # listening before the cancel: it may end at once
        widget.cancel_button.changed.emit(True)
    assert widget.features is None and "Cancelled" in widget.status.value
    assert not list((tmp_path / "cache").glob("*.h5"))


def test_embedded_without_weights_reports_instead_of_crashing(dock, qtbot, monkeypatch):
    viewer, layer, widget = dock
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.patches_widget.show_error", errors.append)
    widget.encoder.value = "uni"  # no weights given
    widget.embed()
    # the error can come before a waitSignal would connect (a race): wait for its effects instead
    qtbot.waitUntil(lambda: bool(errors) and "Failed" in widget.status.value, timeout=20000)
    assert "no weights here" in errors[0]
    qtbot.waitUntil(lambda: widget.embed_button.enabled, timeout=5000)  # the UI is usable again
