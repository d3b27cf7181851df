"""The plugin in a real napari viewer under Xvfb: reader, preferences, sample, dock widget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathalign._napari.preferences import PLUGIN, SLIDE_PATTERNS, claim_slide_extensions
from tests.synthetic import write_big_pyramid

pytest.importorskip("napari")


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    claim_slide_extensions()  # the opt-in (pathalign set-default-reader): these tests open files by path
    return make_napari_viewer_proxy(show=True)


def _draw(qtbot, viewer, ms: int = 300) -> None:
    qtbot.wait(ms)  # napari slices and draws in the Qt event loop


def test_open_svs_gives_lazy_multiscale_layer_in_micrometres(viewer, wsi_dir):
    layers = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=None)  # reader chosen by preference
    layer = layers[0]
    assert layer.source.reader_plugin == PLUGIN
    assert layer.multiscale and layer.rgb and len(layer.data) == 3
    np.testing.assert_allclose(layer.scale, (0.499, 0.499))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["mpp"] == pytest.approx(0.499)
    assert layer.metadata["format"] == "aperio-svs"
    assert layer.metadata["file"].endswith("CMU-1-Small-Region.svs")


def test_slide_without_mpp_stays_in_pixels_and_says_so(viewer, wsi_dir, monkeypatch):
    shown = []
    monkeypatch.setattr("napari_pathalign._napari.layers.show_warning", shown.append)
    layer = viewer.open(str(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs"), plugin=None)[0]
    np.testing.assert_allclose(layer.scale, (1, 1))
    assert [str(u) for u in layer.units] == ["pixel", "pixel"]
    assert layer.metadata["mpp"] is None
    assert shown and "pixel units" in shown[0] and "MPP" in shown[0]


def test_every_slide_pattern_reaches_our_reader(viewer, wsi_dir, tmp_path):
    for name in (
        "CMU-1-Small-Region.pyramid.generic.tif",
        "CMU-1-Small-Region.pyramid.ome.tif",
        "highdicom_sm_image.dcm",
    ):
        layer = viewer.open(str(wsi_dir / name), plugin=None)[0]
        assert layer.source.reader_plugin == PLUGIN, name
        assert layer.multiscale
    # folders have no extension to claim (napari's own reader opens zarr folders): named explicitly
    layer = viewer.open(str(wsi_dir / "CMU-1-Small-Region-dicom"), plugin=PLUGIN)[0]
    assert layer.metadata["format"] == "dicom"
    tiff = tmp_path / "copy.tiff"
    tiff.write_bytes((wsi_dir / "CMU-1-Small-Region.pyramid.generic.tif").read_bytes())
    assert viewer.open(str(tiff), plugin=None)[0].source.reader_plugin == PLUGIN


def test_drag_and_drop_uses_our_reader(make_napari_viewer, wsi_dir, qtbot):
    """A real drop event on the canvas, as a user drags a file from the file manager."""
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    claim_slide_extensions()
    viewer = make_napari_viewer(show=True)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(wsi_dir / "CMU-1-Small-Region.svs"))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    viewer.window._qt_viewer.dropEvent(event)
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=5000)
    assert viewer.layers[0].source.reader_plugin == PLUGIN and viewer.layers[0].multiscale


def test_preferences_claim_only_unassigned_patterns(make_napari_viewer):
    from napari.settings import get_settings

    make_napari_viewer()  # resets settings to a fresh, temporary file
    settings = get_settings().plugins
    settings.extension2reader = {"*.tif": "some-other-plugin"}
    claimed = claim_slide_extensions()
    assert "*.tif" not in claimed and set(claimed) == set(SLIDE_PATTERNS) - {"*.tif"}
    assert settings.extension2reader["*.tif"] == "some-other-plugin"  # the user's choice stays
    assert settings.extension2reader["*.svs"] == PLUGIN
    assert claim_slide_extensions() == []  # idempotent


def test_using_the_plugin_leaves_reader_preferences_alone(make_napari_viewer):
    """A plugin must not change persistent preferences unasked: using every kind of contribution
    (sample data, reader, dock) records nothing; ``pathalign set-default-reader`` is the opt-in."""
    from napari.settings import get_settings
    from npe2 import PluginManager

    from napari_pathalign.cli import main

    viewer = make_napari_viewer()
    assert get_settings().plugins.extension2reader == {}
    pm = PluginManager.instance()
    pm.deactivate(PLUGIN)
    viewer.open_sample(PLUGIN, "cmu1-small-region")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Patches")
    assert get_settings().plugins.extension2reader == {}
    main(["set-default-reader"])
    assert get_settings().plugins.extension2reader["*.svs"] == PLUGIN


def _tiles_in_view(layer, tile: int = 256) -> int:
    """Stored tiles of the displayed level that intersect what napari says is on screen."""
    (y0, x0), (y1, x1) = layer.corner_pixels[:, :2]
    return (int(y1 - 1) // tile - int(y0) // tile + 1) * (int(x1 - 1) // tile - int(x0) // tile + 1)


def test_adding_a_slide_reads_only_the_tiles_on_screen(viewer, tmp_path, qtbot):
    """As napari's own "not greedy" test: showing a large slide decodes only what is drawn."""
    path = write_big_pyramid(tmp_path / "big.tif", side=8192)  # 1024 level-0 tiles, 5 levels
    from napari_pathalign.io import open_slide

    with open_slide(path) as slide:
        assert slide.tiles_decoded == 0, "opening a slide must not decode pixels"
    layer = viewer.open(str(path), plugin=PLUGIN)[0]  # napari slices and draws the layer right away
    slide = layer.metadata["slide"]
    _draw(qtbot, viewer)
    thumbnail_tiles = 4  # napari's layer-list thumbnail reads the coarsest level (512 px: 2 x 2 tiles)
    overview = slide.tiles_decoded
    assert 0 < overview <= _tiles_in_view(layer) + thumbnail_tiles
    # zoom to one spot at full resolution: only the tiles in view are decoded
    viewer.camera.center = (2000 * 0.25, 3000 * 0.25)  # (y, x) in µm (mpp 0.25)
    viewer.camera.zoom = 2.0 / 0.25  # 2 screen pixels per level-0 pixel
    _draw(qtbot, viewer, 600)
    assert layer.data_level == 0
    zoomed = slide.tiles_decoded - overview
    assert 0 < zoomed <= _tiles_in_view(layer), f"{zoomed} tiles decoded, {_tiles_in_view(layer)} in view, of {32 * 32}"
