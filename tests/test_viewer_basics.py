"""The pathologist's viewer on a real slide in a real napari: annotations, magnification, overview, measuring."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from napari_pathalign._napari.slide_geometry import camera_of
from napari_pathalign.io import read_annotations

pytest.importorskip("napari")

DATA = Path(__file__).parent / "data"
QUPATH_04 = DATA / "qupath_0.4_objects.geojson"


@pytest.fixture
def cmu1(make_napari_viewer, wsi_dir):
    """A shown viewer with CMU-1-Small-Region (0.499 µm/px, 2220 x 2967) open through the plugin."""
    from napari_pathalign._napari.preferences import PLUGIN

    viewer = make_napari_viewer(show=True)
    layer = viewer.open(str(wsi_dir / "CMU-1-Small-Region.svs"), plugin=PLUGIN)[0]
    return viewer, layer


def _dock(viewer, name, monkeypatch):
    from napari_pathalign._napari.preferences import PLUGIN

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.status_line.show_error", errors.append)
    widget.errors = errors
    return widget


def _import(widget, path, qtbot):
    worker = widget.import_file(path)
    assert worker is not None, widget.errors
    qtbot.waitUntil(widget.import_button.isEnabled, timeout=20_000)  # enabled again when the worker ends
    qtbot.wait(50)


def test_qupath_annotations_on_cmu1(cmu1, monkeypatch, qtbot, output_dir):
    """The fixture's tumour region (with a hole), stroma, a line and points land where QuPath drew them."""
    from PIL import Image

    viewer, slide_layer = cmu1
    widget = _dock(viewer, "Annotations", monkeypatch)
    _import(widget, QUPATH_04, qtbot)
    assert not widget.errors
    names = [layer.name for layer in viewer.layers]
    assert names[1:] == [
        "qupath_0.4_objects [annotations]",
        "qupath_0.4_objects [detections]",
        "qupath_0.4_objects [points]",
    ]
    regions = viewer.layers["qupath_0.4_objects [annotations]"]
    np.testing.assert_allclose(regions.scale, slide_layer.scale)  # µm, like the slide
    assert list(regions.features["class"]) == ["Tumor", "Tumor", "Stroma", "Stroma", ""]
    assert list(regions.features["part"]) == ["exterior", "hole", "exterior", "exterior", "line"]
    assert regions.shape_type == ["polygon", "polygon", "polygon", "polygon", "path"]
    np.testing.assert_allclose(regions.edge_color[0], [200 / 255, 0, 0, 1])
    assert regions.face_color[0][3] == 0, "a polygon with a hole is outlined, never painted over its hole"
    assert regions.face_color[2][3] > 0, "other regions are tinted with their class colour"
    # QuPath's (1220, 1950) is the top-left corner of that pixel: in world µm, (1950 - 0.5) * 0.499
    hole = regions.data[1]
    np.testing.assert_allclose(regions.data_to_world(hole[0])[-2:], np.array([1949.5, 1219.5]) * 0.499)
    assert len(viewer.layers["qupath_0.4_objects [points]"].data) == 4
    cells = viewer.layers["qupath_0.4_objects [detections]"]
    assert cells.shape_type == ["path"] and len(cells.data[0]) == 5, "a detection is a closed outline, not filled"
    assert "6 objects" in widget.status.text() and "2 Tumor" in widget.status.text()

    viewer.layers.selection.active = regions
    viewer.window.resize(1100, 900)
    camera_of(viewer).center = (1650 * 0.499, 1050 * 0.499)  # the annotated part of the section
    camera_of(viewer).zoom = min(viewer.canvas.size) / (2200 * 0.499)
    qtbot.wait(300)
    # outlines keep ~2 screen pixels whatever the zoom (napari draws widths in data units)
    assert regions.edge_width[0] * 0.499 * camera_of(viewer).zoom == pytest.approx(2.0)
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    Image.fromarray(shot).save(output_dir / "annotations-qupath-on-cmu1.png")
    r, g, b = (shot[..., k].astype(int) for k in range(3))
    assert ((r > 170) & (g < 40) & (b < 40)).sum() > 200, "the red Tumor outline is drawn"


def test_export_of_imported_and_drawn_shapes_reads_back(cmu1, monkeypatch, qtbot, tmp_path):
    viewer, slide_layer = cmu1
    widget = _dock(viewer, "Annotations", monkeypatch)
    _import(widget, QUPATH_04, qtbot)
    regions = viewer.layers["qupath_0.4_objects [annotations]"]
    # a pathologist draws a rectangle from level-0 (100, 200) to (300, 400): layer data = level-0 (y, x) - 0.5
    regions.add_rectangles(np.array([[200, 100], [200, 300], [400, 300], [400, 100]]) - 0.5)
    viewer.layers.selection = {
        regions,
        viewer.layers["qupath_0.4_objects [points]"],
        viewer.layers["qupath_0.4_objects [detections]"],
    }
    path = widget.export_layers(tmp_path / "out.geojson")
    assert path is not None, widget.errors
    again = read_annotations(path)
    original = read_annotations(QUPATH_04)
    by_id = {a.id: a for a in again}
    for ann in original:
        back = by_id[ann.id]
        assert back.classification == ann.classification and back.geometry["type"] == ann.geometry["type"]
        got, want = np.array(_flat(back.geometry), float), np.array(_flat(ann.geometry), float)
        if ann.geometry["type"] in ("Polygon", "MultiPolygon"):  # export closes rings; napari drops the repeat
            np.testing.assert_allclose(np.unique(got, axis=0), np.unique(want, axis=0), atol=1e-6)
        else:
            np.testing.assert_allclose(got, want, atol=1e-6)
    assert by_id[original[0].id].properties["measurements"] == {"Area µm^2": 123456.5}
    drawn = [a for a in again if a.id not in {o.id for o in original}]
    assert len(drawn) == 1 and drawn[0].classification is None
    np.testing.assert_allclose(np.array(drawn[0].geometry["coordinates"][0]).min(0), [100, 200], atol=1e-6)
    assert widget.export_layers(tmp_path / "out.geojson") is None and "already exists" in widget.errors[-1]


def _flat(geometry) -> list:
    coords = geometry["coordinates"]
    if geometry["type"] == "Point":
        return [coords]
    while isinstance(coords[0][0], list):
        coords = [p for part in coords for p in part]
    return coords


def test_bad_annotation_files_are_refused_in_words(cmu1, monkeypatch, qtbot, tmp_path):
    viewer, _ = cmu1
    widget = _dock(viewer, "Annotations", monkeypatch)
    off = tmp_path / "other-slide.geojson"
    off.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [50_000, 10]}}))
    _import(widget, off, qtbot)
    assert "lies off the slide" in widget.errors[-1] and "2220 x 2967" in widget.errors[-1]
    (tmp_path / "x.geojson").write_text("<xml/>")
    _import(widget, tmp_path / "x.geojson", qtbot)
    assert "not JSON" in widget.errors[-1]
    assert len(viewer.layers) == 1


def _cells_file(path: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    ring = 6 * np.stack([np.cos(np.linspace(0, 6.28, 16)), np.sin(np.linspace(0, 6.28, 16))], 1)
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [(ring + c).tolist()]},
            "properties": {"objectType": "detection", "classification": {"name": "Tumor", "color": [200, 0, 0]}},
        }
        for c in rng.uniform(20, 2000, (count, 2))
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_reading_and_building_cells_in_a_thread_leaves_the_gil(cmu1, tmp_path):
    """What the dock's worker does (read, check, build the Shapes layer) gives Python's lock back: another
    thread ticking every 2 ms sees pauses of ~20 ms alone, but up to ~300 ms when the cycle collector makes
    a full pass over a process holding several napari viewers (the collector's, not the reader's)."""
    import gc
    import threading

    from napari_pathalign._napari.annotation_layers import annotation_layers
    from napari_pathalign.io import check_bounds

    _, slide_layer = cmu1
    path = _cells_file(tmp_path / "cells.geojson", 5000)
    result = []

    def work():
        annotations = read_annotations(path)
        check_bounds(annotations, 2220, 2967)
        result.extend(annotation_layers(annotations, slide_layer, "cells"))

    gc.collect()  # the garbage earlier tests left is not the reader's pause
    reader = threading.Thread(target=work)
    ticks = [time.perf_counter()]
    reader.start()
    while reader.is_alive():
        time.sleep(0.002)
        ticks.append(time.perf_counter())
    pause = np.diff(ticks).max() * 1000
    print(f"read + build of 5,000 cells in a thread: {ticks[-1] - ticks[0]:.2f} s, longest pause {pause:.0f} ms")
    assert len(result[0].data) == 5000
    assert pause < 500, f"the worker held the interpreter for {pause:.0f} ms"


def test_large_import_keeps_the_window_responsive(cmu1, monkeypatch, qtbot, tmp_path):
    """3,000 cells: reading, checking and triangulating run in a worker while the event loop keeps ticking.

    Under Xvfb the canvas is painted by software OpenGL on the GUI thread (100-200 ms a frame on a busy
    two-core machine), so the loop's pauses here include paints that are not the import's; the import's
    own share is held under 100 ms by ``test_reading_and_building_cells_in_a_thread_leaves_the_gil``.
    """
    from qtpy.QtCore import QTimer

    viewer, _ = cmu1
    widget = _dock(viewer, "Annotations", monkeypatch)
    path = _cells_file(tmp_path / "cells.geojson", 3000)
    ticks, added = [], []
    add = widget._add_layers

    def timed_add(*args):
        added.append(time.perf_counter())
        add(*args)
        added.append(time.perf_counter())

    monkeypatch.setattr(widget, "_add_layers", timed_add)
    qtbot.wait(300)  # the slide's first paint is done
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(5)
    ticks.append(time.perf_counter())
    widget.import_file(path)
    qtbot.waitUntil(lambda: len(added) == 2, timeout=30_000)
    timer.stop()
    before = np.array([t for t in ticks if t <= added[0]] + [added[0]])
    worker_gap = np.diff(before).max() * 1000
    print(
        f"import of 3,000 cells: {(added[0] - before[0]):.2f} s in the worker, longest pause {worker_gap:.0f} ms; "
        f"adding the layer on the GUI thread {1000 * (added[1] - added[0]):.0f} ms"
    )
    assert len(before) > 20, "the event loop kept running while the worker read the file"
    assert len(viewer.layers["cells [detections]"].data) == 3000
    assert worker_gap < 300, f"the window froze for {worker_gap:.0f} ms while the file was read"


# ---------------------------------------------------------------------------------------------- slide view
def test_magnification_control_shortcuts_and_scale_bar(cmu1, monkeypatch, qtbot, output_dir):
    from PIL import Image

    from napari_pathalign._napari.magnification import SHORTCUTS

    viewer, slide_layer = cmu1
    assert viewer.scale_bar.visible, "on when a slide opens"
    assert [str(u) for u in slide_layer.units] == ["micrometer", "micrometer"], "the bar reads the layer's µm"
    widget = _dock(viewer, "Slide view", monkeypatch)
    viewer.window.resize(1100, 900)
    index = widget.magnification.findData(20.0)
    widget.magnification.setCurrentIndex(index)
    widget.magnification.activated.emit(index)
    assert camera_of(viewer).zoom == pytest.approx(2.0)  # 20x = 0.5 µm per screen pixel
    assert widget.current.text().startswith("20x") and "0.5 µm per screen pixel" in widget.current.text()
    assert viewer.text_overlay.visible and viewer.text_overlay.text == "20x"
    # Alt-3 = 5x: the viewer's own key binding calls the dock
    assert [SHORTCUTS[m] for m in (1.25, 40.0)] == ["Alt-1", "Alt-6"]
    viewer.keymap[_key(viewer, "Alt-3")](viewer)
    assert camera_of(viewer).zoom == pytest.approx(0.5) and viewer.text_overlay.text == "5x"
    camera_of(viewer).zoom = 0.25  # zoomed by the mouse wheel: the text follows
    qtbot.wait(100)
    assert widget.current.text().startswith("2.5x") and viewer.text_overlay.text == "2.5x"
    assert widget.magnification.currentData() == 2.5, "the combo names what is shown"
    camera_of(viewer).zoom = 0.73
    qtbot.wait(100)
    assert widget.magnification.currentText().startswith("7.3x (between")
    widget.set_magnification(10)
    camera_of(viewer).center = (1650 * 0.499, 1100 * 0.499)
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=False, flash=False)[..., :3]
    Image.fromarray(shot).save(output_dir / "magnification-10x.png")


def _key(viewer, name):
    """The keymap's own key for ``name`` ('Alt-3'), however napari spells it."""
    matches = [k for k in viewer.keymap if str(k).replace("+", "-").lower() == name.lower()]
    assert matches, f"{name} is not bound; bound: {list(viewer.keymap)}"
    return matches[0]


def test_slide_without_mpp_gets_words_not_a_number(make_napari_viewer, wsi_dir, monkeypatch):
    from napari_pathalign._napari.preferences import PLUGIN

    viewer = make_napari_viewer(show=True)
    viewer.open(str(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs"), plugin=PLUGIN)
    widget = _dock(viewer, "Slide view", monkeypatch)
    assert not widget.magnification.isEnabled()
    assert "no µm/px" in widget.current.text() and "x" not in widget.current.text().split(":")[0][:3]
    assert widget.set_magnification(20) is False and "no µm/px" in widget.errors[-1]
    assert "unknown" in viewer.text_overlay.text


def test_overview_follows_the_camera_and_moves_it(cmu1, monkeypatch, qtbot, output_dir):
    from qtpy.QtCore import QPoint, Qt

    viewer, _ = cmu1
    widget = _dock(viewer, "Slide view", monkeypatch)
    viewer.window.resize(1100, 900)
    widget.set_magnification(10)
    camera_of(viewer).center = (500 * 0.499, 700 * 0.499)  # level-0 (x 700, y 500)
    qtbot.wait(150)  # the overview follows after a short throttle
    top, left, bottom, right = widget.overview.view
    h0, w0 = 2967, 2220
    assert (top + bottom) / 2 * h0 == pytest.approx(500, abs=2) and (left + right) / 2 * w0 == pytest.approx(700, abs=2)
    pixmap = widget.overview.pixmap
    assert max(pixmap.width(), pixmap.height()) == 256
    # a click on the thumbnail at 3/4 of its height, 1/2 of its width centres the view there
    qtbot.mouseClick(
        widget.overview, Qt.MouseButton.LeftButton, pos=QPoint(pixmap.width() // 2, pixmap.height() * 3 // 4)
    )
    cy, cx = camera_of(viewer).center[-2:]
    assert cy / 0.499 == pytest.approx(0.75 * h0, abs=15) and cx / 0.499 == pytest.approx(0.5 * w0, abs=15)
    qtbot.wait(150)
    widget.overview.grab().save(str(output_dir / "overview.png"))


# ---------------------------------------------------------------------------------------------- measuring
def _ruler(viewer, slide_layer):
    """A Shapes layer on the slide (same µm scale), as a pathologist would add to draw on."""
    return viewer.add_shapes(
        scale=slide_layer.scale, translate=slide_layer.translate, units=slide_layer.units, name="drawn", edge_width=6
    )


def test_measured_line_region_and_tissue_fraction_to_csv(cmu1, monkeypatch, qtbot, tmp_path, output_dir):
    import csv

    from PIL import Image

    viewer, slide_layer = cmu1
    drawn = _ruler(viewer, slide_layer)
    widget = _dock(viewer, "Measure", monkeypatch)
    viewer.layers.selection.active = drawn
    # layer data = level-0 (y, x) - 0.5: a line 3006 px long (1.5 mm at 0.499 µm/px)
    drawn.add_lines(np.array([[2000, 300], [2000, 3306]]) - 0.5, edge_color="yellow")
    qtbot.waitUntil(lambda: len(widget.measurements) == 1, timeout=2000)
    assert widget.table.item(0, 2).text() == "1.50 mm" and list(drawn.features["measure"]) == ["1.50 mm"]
    drawn.add_rectangles(np.array([[1500, 50], [1900, 450]]) - 0.5, edge_color="cyan", face_color="transparent")
    drawn.add_rectangles(np.array([[2300, 1000], [2700, 1300]]) - 0.5, edge_color="cyan", face_color="transparent")
    qtbot.waitUntil(lambda: len(widget.measurements) == 3, timeout=2000)
    glass, tissue = widget.measurements[1:]
    assert glass.area_mm2 == pytest.approx(400 * 400 * 0.499**2 / 1e6) and widget.table.item(1, 3).text() == "0.040 mm²"
    worker = widget.compute_tissue()
    qtbot.waitUntil(lambda: not np.isnan(widget.measurements[1].tissue_fraction), timeout=20_000)
    assert worker is not None
    glass, tissue = widget.measurements[1:]
    assert glass.tissue_fraction < 0.1 and tissue.tissue_fraction > 0.8, (glass, tissue)
    # moving a vertex re-measures, live
    data = drawn.data
    data[0] = np.array([[2000, 300], [2000, 300 + 1002]]) - 0.5  # 500 µm
    drawn.data = data
    qtbot.waitUntil(lambda: widget.table.item(0, 2).text() == "500 µm", timeout=2000)
    viewer.window.resize(1100, 900)
    camera_of(viewer).center = (2150 * 0.499, 700 * 0.499)
    camera_of(viewer).zoom = 0.75
    qtbot.wait(300)
    Image.fromarray(viewer.screenshot(canvas_only=True, flash=False)[..., :3]).save(output_dir / "measured-line.png")
    path = widget.export_csv(tmp_path / "m.csv")
    rows = list(csv.DictReader(open(path)))
    assert [r["kind"] for r in rows] == ["line", "region", "region"]
    assert float(rows[0]["length_um"]) == pytest.approx(1002 * 0.499, rel=1e-4) and rows[0]["area_mm2"] == ""
    assert float(rows[2]["tissue_fraction"]) > 0.8
    assert widget.export_csv(tmp_path / "m.csv") is None and "already exists" in widget.errors[-1]


def test_very_many_detections_are_a_pyramid_exported_as_they_came(cmu1, monkeypatch, qtbot, tmp_path, output_dir):
    """Beyond MAX_OUTLINES (lowered here to 100) detections are drawn into an RGBA pyramid on the slide's pixel
    grid: outlines in their class colour at level 0, dots when zoomed out; export writes them as they came."""
    from PIL import Image

    from napari_pathalign._napari.slide_geometry import camera_of

    monkeypatch.setattr("napari_pathalign._napari.annotation_layers.MAX_OUTLINES", 100)
    viewer, slide_layer = cmu1
    widget = _dock(viewer, "Annotations", monkeypatch)
    path = _cells_file(tmp_path / "cells.geojson", 150)
    _import(widget, path, qtbot)
    cells = viewer.layers["cells [detections]"]
    assert cells.multiscale and cells.rgb and [layer.name for layer in viewer.layers] == [slide_layer.name, cells.name]
    np.testing.assert_allclose(cells.scale, slide_layer.scale)
    np.testing.assert_allclose(cells.translate, slide_layer.translate)
    assert cells.data[0].shape == (2967, 2220, 4)
    first = read_annotations(path)[0]
    ring = np.asarray(first.geometry["coordinates"][0])
    x, y = np.floor(ring[0]).astype(int)  # a vertex of the first cell: on its outline, in Tumor's colour
    assert tuple(np.asarray(cells.data[0][y, x])) == (200, 0, 0, 255)
    cx, cy = ring.mean(0).astype(int)  # its inside (radius 6) is left clear, and so is the slide's far corner
    assert np.asarray(cells.data[0][cy, cx])[3] == 0 and not np.asarray(cells.data[0][2850:2967, 2100:2220]).any()
    coarse = np.asarray(cells.data[-1])  # zoomed out, each cell is a dot at its centre
    f = 2 ** (len(cells.data) - 1)
    assert tuple(coarse[int(ring[:, 1].mean() // f), int(ring[:, 0].mean() // f)]) == (200, 0, 0, 255)
    assert (coarse[..., 3] > 0).sum() <= 150 * 5
    camera_of(viewer).center = (1000 * 0.499, 1000 * 0.499)
    camera_of(viewer).zoom = 1.2
    qtbot.wait(300)
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    Image.fromarray(shot).save(output_dir / "detections.png")
    cells.visible = False
    qtbot.wait(100)
    bare = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    cells.visible = True

    def red(image):
        return int(((image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)).sum())

    assert red(shot) > red(bare) + 150, ("the outlines are painted on the slide", red(shot), red(bare))
    viewer.layers.selection = {cells}
    again = read_annotations(widget.export_layers(tmp_path / "out.geojson"))
    assert len(again) == 150 and all(a.geometry["type"] == "Polygon" for a in again)
    assert again[0].geometry["coordinates"][0] == ring.tolist() + [ring[0].tolist()], "closed, as GeoJSON wants"
    assert {a.classification for a in again} == {"Tumor"}


def test_measuring_an_imported_region_takes_its_hole_out(cmu1, monkeypatch, qtbot):
    from napari_pathalign.core.polygons import polygon_area

    viewer, _ = cmu1
    annotations = _dock(viewer, "Annotations", monkeypatch)
    _import(annotations, QUPATH_04, qtbot)
    widget = _dock(viewer, "Measure", monkeypatch)
    regions = viewer.layers["qupath_0.4_objects [annotations]"]
    viewer.layers.selection.active = regions
    follicle = read_annotations(QUPATH_04)[0]
    rows = widget.remeasure()
    assert [m.shape for m in rows] == [0, 2, 3, 4], "the hole (shape 1) is measured with its region"
    want = polygon_area([np.array(r) for r in follicle.geometry["coordinates"]]) * 0.499**2 / 1e6
    assert rows[0].area_mm2 == pytest.approx(want) and rows[0].classification == "Tumor"
    assert want < polygon_area([np.array(follicle.geometry["coordinates"][0])]) * 0.499**2 / 1e6
    assert list(regions.features["measure"])[1] == "" and rows[3].kind == "line"


def test_an_import_freezes_what_it_built_until_its_layers_are_closed(cmu1, monkeypatch, qtbot):
    """The import keeps its millions of coordinate lists out of the cycle collector's passes (gc.freeze); once
    the last imported layer is closed, everything goes back to the collector, so a slide closed meanwhile
    (with its frame cache) is not kept alive for want of a collection."""
    import gc

    viewer, _ = cmu1
    widget = _dock(viewer, "Annotations", monkeypatch)
    gc.unfreeze()
    _import(widget, QUPATH_04, qtbot)
    assert gc.get_freeze_count() > 0 and widget.frozen
    layers = list(widget.frozen)
    viewer.layers.remove(layers[0])
    assert gc.get_freeze_count() > 0 or len(layers) == 1, "another imported layer is still open"
    for layer in layers[1:]:
        viewer.layers.remove(layer)
    assert gc.get_freeze_count() == 0 and not widget.frozen
