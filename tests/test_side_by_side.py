"""Slides side by side: a second slide in the Side by side dock's canvas, pan and zoom linked in µm."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathalign._napari.slide_geometry import camera_of

napari = pytest.importorskip("napari")

MPP = 0.499  # CMU-1-Small-Region's µm per pixel


@pytest.fixture
def side(make_napari_viewer, wsi_dir, monkeypatch):
    """A shown viewer with CMU-1-Small-Region open and the Side by side dock docked (errors collected)."""
    from napari_pathalign._napari.preferences import PLUGIN
    from napari_pathalign._napari.side_by_side import DISPLAY_NAME

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 850)
    layer = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=PLUGIN)[0]
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, DISPLAY_NAME)
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.status_line.show_error", errors.append)
    dock.errors = errors
    return viewer, layer, dock


def _follows(qtbot, src, dst, center_yx, zoom):
    """Set ``src`` camera; ``dst`` shows the same µm point at the same scale once the events are passed on."""
    src.center = center_yx
    src.zoom = zoom
    qtbot.waitUntil(
        lambda: np.allclose(dst.center[-2:], center_yx, atol=1e-6) and np.isclose(dst.zoom, zoom), timeout=3000
    )


def test_second_slide_follows_the_main_camera_in_um_and_back(side, qtbot, wsi_dir, output_dir):
    from PIL import Image

    viewer, layer, dock = side
    second = dock.open_slide(wsi_dir / "CMU-1-Small-Region.pyramid.ome.tif")
    assert second is not None, dock.errors
    assert second in dock.second.layers and second not in viewer.layers  # its own canvas, not the main one
    assert np.allclose(second.scale, layer.scale) and "µm/px" in dock.about.text()
    main, other = camera_of(viewer), camera_of(dock.second)
    # opening while linked: the second canvas takes the main's view
    assert np.allclose(other.center[-2:], main.center[-2:]) and np.isclose(other.zoom, main.zoom)

    # the main moves -> the second follows (1000 x 1500 px of CMU-1 in µm, 2 screen px per µm)
    _follows(qtbot, main, other, (1000 * MPP, 1500 * MPP), 2.0)
    # the second moves -> the main follows
    _follows(qtbot, other, main, (400 * MPP, 700 * MPP), 0.5)

    # a screenshot a pathologist can look at: both slides at the same region and magnification
    _follows(qtbot, main, other, (1500 * MPP, 1000 * MPP), 0.6)
    qtbot.wait(600)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3]).save(output_dir / "side-by-side.png")

    # untick the link: each canvas moves on its own
    dock.link.setChecked(False)
    main.center, main.zoom = (200 * MPP, 300 * MPP), 1.0
    qtbot.wait(200)
    assert not np.allclose(other.center[-2:], main.center[-2:]) and not np.isclose(other.zoom, 1.0)
    other.center = (2500 * MPP, 1800 * MPP)
    qtbot.wait(200)
    assert np.allclose(main.center[-2:], (200 * MPP, 300 * MPP))
    # tick it again: the second comes to the main's view at once
    dock.link.setChecked(True)
    assert np.allclose(other.center[-2:], main.center[-2:]) and np.isclose(other.zoom, 1.0)
    assert dock.errors == []


def test_link_is_relative_to_each_slides_top_left(side, qtbot, wsi_dir):
    """A main slide placed to the right (a hit opened beside) links by µm from its own top-left corner."""
    viewer, layer, dock = side
    dock.open_slide(wsi_dir / "CMU-1-Small-Region.svs")
    layer.translate = (0.0, 5000.0)
    viewer.layers.selection.active = layer
    main, other = camera_of(viewer), camera_of(dock.second)
    main.center = (300.0, 5000.0 + 400.0)
    qtbot.waitUntil(lambda: np.allclose(other.center[-2:], (300.0, 400.0)), timeout=3000)


def test_each_slide_keeps_its_heatmap(side, qtbot, wsi_dir, output_dir):
    from PIL import Image

    from napari_pathalign._napari.heatmap_layers import HEATMAP_KEY, heatmap_layer_data
    from napari_pathalign.core.heatmap import Heatmap

    viewer, layer, dock = side
    assert dock.add_heatmap(None) is None and "Open a second slide first" in dock.errors[-1]
    second = dock.open_slide(wsi_dir / "CMU-1-Small-Region.svs")
    xy = np.array([[x, y] for y in range(0, 2967 - 224, 224) for x in range(0, 2220 - 224, 224)])  # (N, 2)
    values = np.linspace(0, 1, len(xy), dtype=np.float32)  # (N,)

    def heatmap(label):
        return Heatmap(values=values, xy_level0=xy, size_level0=224, mpp=MPP, kind="test", label=label)

    data, kwargs, _ = heatmap_layer_data(heatmap("main's heatmap"), layer)
    main_heat = viewer.add_image(data, **kwargs)
    heat = dock.add_heatmap(heatmap("second's heatmap"))
    assert heat in dock.second.layers and heat not in viewer.layers
    assert main_heat in viewer.layers and main_heat not in dock.second.layers
    assert heat.metadata[HEATMAP_KEY].label == "second's heatmap" and heat.metadata["slide_layer"] == second.name
    np.testing.assert_allclose(heat.extent.world[0][-2:], main_heat.extent.world[0][-2:])  # same place on each
    viewer.layers.selection.active = layer
    camera_of(viewer).center, camera_of(viewer).zoom = (1480 * MPP, 1110 * MPP), 0.22
    qtbot.wait(600)
    Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)[..., :3]).save(
        output_dir / "side-by-side-heatmaps.png"
    )
    # any layer can go over the second slide, and replacing the slide takes its layers with it
    shapes = dock.add_layer(napari.layers.Shapes(name="notes", units=("µm", "µm")))
    assert shapes in dock.second.layers
    replaced = dock.open_slide(wsi_dir / "CMU-1-Small-Region.pyramid.ome.tif")
    assert list(dock.second.layers) == [replaced] and main_heat in viewer.layers


def test_bad_file_closing_and_removing_are_clean(side, qtbot, wsi_dir, tmp_path):
    viewer, layer, dock = side
    bad = tmp_path / "not-a-slide.svs"
    bad.write_bytes(b"this is not a TIFF")
    assert dock.open_slide(bad) is None
    assert (
        "not a whole-slide image" in dock.errors[-1]
        and "not-a-slide.svs" in dock.errors[-1]
        and len(dock.second.layers) == 0
    )
    assert dock.open_slide(tmp_path / "missing.svs") is None and "missing.svs" in dock.errors[-1]
    errors = len(dock.errors)
    second = dock.open_slide(wsi_dir / "CMU-1-Small-Region.svs")
    slide = second.metadata["slide"]
    dock.close_button.click()
    assert len(dock.second.layers) == 0 and dock.slide_layer is None and not dock.close_button.isEnabled()
    assert "No second slide" in dock.about.text()
    dock.canvas._qt_open([str(slide.path)], stack=False)  # a file dropped on the second canvas opens there
    assert dock.slide_layer is not None and dock.slide_layer not in viewer.layers
    # the user deletes the slide layer from the second canvas's layer list: the dock forgets it
    dock.second.layers.remove(dock.slide_layer)
    assert dock.slide_layer is None
    # removing the dock: the main camera no longer drives anything, the viewer keeps working
    dock.open_slide(wsi_dir / "CMU-1-Small-Region.svs")
    from napari_pathalign._napari.side_by_side import side_by_side_dock

    assert side_by_side_dock(viewer, open_it=False) is dock
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does (it never closes the widget)
    qtbot.waitUntil(lambda: side_by_side_dock(viewer, open_it=False) is None, timeout=2000)
    assert len(dock.second.layers) == 0 and dock.canvas is None
    dock.close()  # a second close does nothing more
    camera_of(viewer).center = (100.0, 100.0)
    camera_of(viewer).zoom = 3.0
    qtbot.wait(100)
    assert layer in viewer.layers and len(dock.errors) == errors


def test_similar_case_opens_beside_in_the_linked_canvas(side, qtbot, wsi_dir, monkeypatch):
    """The Similar cases dock's "open beside" puts a hit in the Side by side canvas, its region outlined."""
    from napari_pathalign._napari.preferences import PLUGIN
    from napari_pathalign.index import Hit

    viewer, layer, dock = side
    _, search = viewer.window.add_plugin_dock_widget(PLUGIN, "Similar cases")
    search.hits = [
        Hit(
            id=3,
            score=0.9,
            rank=1,
            path=str(wsi_dir / "CMU-1-Small-Region.svs"),
            fingerprint="",
            label=None,
            site=None,
            report=None,
            thumbnail_png=b"",
            features_path=None,
            target="slides",
            region_xywh=(200, 300, 448, 448),
        )
    ]
    search.beside.setChecked(True)
    opened = search.open_hit(0)
    assert opened is dock.slide_layer and opened not in viewer.layers and len(viewer.layers) == 1
    region = dock.second.layers[-1]
    assert region.name == "hit 1: matched region"
    np.testing.assert_allclose(region.data[0].min(0), np.array([300 - 0.5, 200 - 0.5]) * MPP, atol=1e-6)
    # unticked: the hit opens to the right of the current slide in the main canvas, as before
    search.beside.setChecked(False)
    beside = search.open_hit(0)
    assert beside in viewer.layers and beside.extent.world[0][-1] > layer.extent.world[1][-1]
