"""What the user sees: a screenshot of the opened slide, the sample, the info dock, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathalign._napari.preferences import PLUGIN, claim_slide_extensions
from napari_pathalign._napari.reader import get_reader

pytest.importorskip("napari")


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    claim_slide_extensions()
    return make_napari_viewer_proxy(show=True)


def test_screenshot_of_opened_slide(viewer, wsi_dir, output_dir, qtbot):
    """Saved to test-output/ for a person to look at; checked to show tissue, not a black canvas."""
    from PIL import Image

    viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=None)
    viewer.scale_bar.visible = True
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    Image.fromarray(shot).save(output_dir / "cmu1-small-region.png")
    assert shot.std() > 20, "the canvas is uniform: nothing was drawn"
    r, g, b = (shot[..., k].astype(int) for k in range(3))
    pink = (r > g + 30) & (b > g + 10)  # eosin/haematoxylin pixels
    assert pink.mean() > 0.1, f"only {pink.mean():.1%} of the canvas is stained tissue"


def test_sample_data_is_the_real_cmu1_slide(viewer):
    layer = viewer.open_sample(PLUGIN, "cmu1-small-region")[0]
    assert layer.metadata["format"] == "aperio-svs"
    assert layer.metadata["shape_level0"] == (2967, 2220)
    np.testing.assert_allclose(layer.scale, (0.499, 0.499))


def test_info_dock_shows_metadata_and_associated_only_on_request(make_napari_viewer, wsi_dir, qtbot):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    layer = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=PLUGIN)[0]
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide information")
    viewer.layers.selection.active = layer
    text = widget.info.text()
    assert "aperio-svs" in text and "0.499 µm/px" in text and "2220 x 2967" in text
    assert len(viewer.layers) == 1, "label and macro must not be shown unasked"
    assert widget.show_associated.isEnabled()
    qtbot.mouseClick(widget.show_associated, Qt.MouseButton.LeftButton)
    names = [lyr.name for lyr in viewer.layers]
    assert names == [layer.name, f"{layer.name} [thumbnail]", f"{layer.name} [label]", f"{layer.name} [macro]"]
    label = viewer.layers[f"{layer.name} [label]"]
    assert label.extent.world[0][1] > layer.extent.world[1][1], "placed beside the slide, not over it"
    # a layer that is not a slide: the button is disabled and the text says what to do
    viewer.layers.selection.active = label
    assert not widget.show_associated.isEnabled() and "Select a slide" in widget.info.text()


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n" + b"0" * 100, b"II*\x00" + b"\xff" * 60])
def test_reader_declines_bad_files_with_a_notification(tmp_path, monkeypatch, content):
    shown = []
    monkeypatch.setattr("napari_pathalign._napari.reader.show_warning", shown.append)
    path = tmp_path / "bad slide é.svs"
    path.write_bytes(content)
    assert get_reader(str(path)) is None
    assert shown and "bad slide é.svs" in shown[0]


def test_bad_file_keeps_viewer_running(viewer, tmp_path, wsi_dir):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    with pytest.raises(Exception, match="refused the file|failed"):
        viewer.open(str(bad), plugin=None)
    layer = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=None)[0]
    assert layer.multiscale  # napari is still working after the failure


def test_scientific_tiff_goes_to_napari_reader_and_says_so(tmp_path, monkeypatch):
    import tifffile

    shown = []
    monkeypatch.setattr("napari_pathalign._napari.reader.show_info", shown.append)
    path = tmp_path / "fluorescence.tif"
    tifffile.imwrite(path, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    reader = get_reader(str(path))
    assert reader is not None
    data = reader(str(path))[0][0]
    assert "napari's built-in TIFF reader" in shown[0]
    assert np.asarray(data).dtype == np.uint16


def test_demo_window_shows_cmu1_beside_the_demo_slide(output_dir, qtbot):
    """`make demo`: the real CMU-1 sample and the demo lymph node from held-out tiles, side by side."""
    from PIL import Image

    from napari_pathalign._napari.demo import build_viewer

    viewer = build_viewer(show=True)
    try:
        names = [layer.name for layer in viewer.layers]
        assert len(names) == 2 and "CMU-1-Small-Region.svs" in names and "demo-lymph-node.tif" in names
        demo = viewer.layers["demo-lymph-node.tif"]
        np.testing.assert_allclose(demo.scale, (0.972, 0.972))  # in µm, like the real slide
        cmu1 = viewer.layers["CMU-1-Small-Region.svs"]
        assert demo.extent.world[0][1] > cmu1.extent.world[1][1]  # beside it, not on top of it
        qtbot.wait(300)
        shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
        Image.fromarray(shot).save(output_dir / "demo-window.png")
        assert shot.std() > 20
    finally:
        viewer.close()
