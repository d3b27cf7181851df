"""An imported QuPath region is a region the workspace understands: its statistics (area, tissue, zero-shot class
shares, heatmap values, CSV), zero-shot of the region, and a report checked "here", on the demo lymph node whose
tumour focus is known cell by cell (``demo-lymph-node.classes.json``)."""

from __future__ import annotations

import csv
import json
import math
from importlib.resources import files

import numpy as np
import pytest

from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io import Annotation, write_annotations
from napari_pathalign.io.csv_table import write_csv
from napari_pathalign.tiling.region_stats import measure, region_patches, with_model_values

DEMO = files("napari_pathalign.resources") / "demo-lymph-node.tif"


def _truth_regions():
    """Two level-0 rectangles on the demo slide from its class grid: one all tumour, one all normal."""
    truth = json.loads((files("napari_pathalign.resources") / "demo-lymph-node.classes.json").read_text())
    grid, cell = np.array(truth["grid"]), truth["cell_size_level0"]
    tumour, normal = grid[2:6, 9:13], grid[9:13, 6:14]
    assert (tumour == 1).all() and (normal == 0).all(), "the demo's known focus moved: update the test's cells"

    def box(r0, r1, c0, c1):
        x0, x1, y0, y1 = c0 * cell, c1 * cell, r0 * cell, r1 * cell
        return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]

    return box(2, 6, 9, 13), box(9, 13, 6, 14)


# ---------------------------------------------------------------------------------------------- the statistics
def _map(values, label="P(x)"):
    xy = np.array([[x, y] for y in range(0, 400, 100) for x in range(0, 400, 100)])  # a 4 x 4 lattice of 100 px
    return Heatmap(np.asarray(values, float), xy, 100, 0.5, "zero-shot", label)


def test_a_regions_patches_exclude_its_holes_and_give_class_shares_and_heatmap_values(tmp_path):
    exterior = np.array([[0, 0], [400, 0], [400, 400], [0, 400]], float)
    hole = np.array([[100, 100], [200, 100], [200, 200], [100, 200]], float)  # patch (100, 100)'s centre inside
    index = region_patches([exterior, hole], _map(np.zeros(16)).xy_level0, 100)
    assert len(index) == 15 and 5 not in index
    a = np.r_[np.ones(8), np.zeros(8)]  # the top half is class a
    maps = {"a": _map(a * 0.9 + 0.05), "b": _map(1 - (a * 0.9 + 0.05))}
    heat = _map(np.arange(16.0), "similarity to 'x'").normalised("rank")  # shown normalised: raw values are read
    top = [np.array([[0, 0], [400, 0], [400, 200], [0, 200]], float)]
    m = with_model_values(measure(0, "region", top, 0.5), top, maps, heat)
    assert m.patches == 8 and m.class_fractions == pytest.approx({"a": 0.95, "b": 0.05})
    assert (m.heatmap_mean, m.heatmap_max, m.heatmap) == (3.5, 7.0, "similarity to 'x'")
    line = measure(1, "line", [np.array([[0, 0], [10, 0]])], 0.5)
    assert with_model_values(line, [], maps, heat) is line, "a line has no patches"
    off = [np.array([[1000, 1000], [1100, 1000], [1100, 1100]], float)]
    empty = with_model_values(measure(2, "region", off, 0.5), off, maps, heat)
    assert empty.patches == 0 and math.isnan(empty.heatmap_mean) and math.isnan(empty.class_fractions["a"])
    rows = list(csv.DictReader(open(write_csv([m, line, empty], tmp_path / "r.csv"))))
    assert float(rows[0]["class_fractions:a"]) == pytest.approx(0.95) and rows[0]["class_fractions:b"] != ""
    assert rows[1]["class_fractions:a"] == "" and rows[1]["patches"] == "" and rows[0]["heatmap_max"] == "7"


# ---------------------------------------------------------------------------------------------- in napari
@pytest.fixture
def workspace(make_napari_viewer, tmp_path, monkeypatch):
    """The demo slide with two QuPath regions imported (tumour focus, normal node) and the workspace analysed."""
    from tests.conftest import open_plugin_dock

    viewer, slide_layer, work = open_plugin_dock(
        make_napari_viewer, monkeypatch, DEMO, "PathAlign workspace", tmp_path / "cache"
    )
    tumour, normal = _truth_regions()
    path = tmp_path / "regions.geojson"
    write_annotations(
        [
            Annotation({"type": "Polygon", "coordinates": tumour}, "Tumor", (200, 0, 0), "focus"),
            Annotation({"type": "Polygon", "coordinates": normal}, "Lymphocytes", (0, 0, 200), "node"),
        ],
        path,
    )
    return viewer, slide_layer, work, path


def _dock(viewer, name, errors):
    from napari_pathalign._napari.preferences import PLUGIN

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    widget.errors = errors
    return widget


def _wait(qtbot, worker, timeout=180_000):
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass
    qtbot.wait(50)


def test_imported_regions_get_statistics_zero_shot_and_a_check_here(workspace, qtbot, tmp_path, output_dir):
    from napari_pathalign._napari.report_widget import ReportWidget
    from napari_pathalign.reporting.report_store import ReportStore

    viewer, slide_layer, work, path = workspace
    annotations = _dock(viewer, "Annotations", work.errors)
    _wait(qtbot, annotations.import_file(path))
    regions = viewer.layers["regions [annotations]"]
    assert list(regions.features["class"]) == ["Tumor", "Lymphocytes"]

    # analysed once, in the workspace; every dock uses that analysis
    viewer.layers.selection.active = slide_layer
    worker = work.analyse()
    assert worker is not None, (work.errors, work.status.text(), viewer.layers.selection.active)
    _wait(qtbot, worker)
    assert work.analysis is not None and work.analysis.ready, work.errors
    _wait(qtbot, work.show_text("metastatic carcinoma"))  # a text heatmap over the slide

    # statistics per region: area, patches, zero-shot class shares, the heatmap's values; CSV
    measure_dock = _dock(viewer, "Measure", work.errors)
    viewer.layers.selection.active = regions
    qtbot.waitUntil(lambda: len(measure_dock.measurements) == 2, timeout=5000)
    _wait(qtbot, measure_dock.compute_model_values())
    focus, node = measure_dock.measurements
    assert focus.area_mm2 == pytest.approx((4 * 96 * 0.972) ** 2 / 1e6) and focus.patches >= 4, focus
    assert node.patches >= 12 and sum(node.class_fractions.values()) == pytest.approx(1.0), node
    tumour_class = next(c for c in focus.class_fractions if "carcinoma" in c or "tumour" in c.lower())
    assert focus.class_fractions[tumour_class] > node.class_fractions[tumour_class] + 0.4, (focus, node)
    assert "metastatic carcinoma" in focus.heatmap and focus.heatmap_mean > node.heatmap_mean, (focus, node)
    assert focus.heatmap_max >= focus.heatmap_mean
    assert tumour_class in measure_dock.table.item(0, 6).text()
    rows = list(csv.DictReader(open(measure_dock.export_csv(tmp_path / "regions.csv"))))
    assert float(rows[0][f"class_fractions:{tumour_class}"]) == pytest.approx(focus.class_fractions[tumour_class])
    assert float(rows[1]["heatmap_mean"]) == pytest.approx(node.heatmap_mean, rel=1e-5)

    # zero-shot of the selected imported region, in the workspace
    regions.selected_data = {0}
    work.zero_shot.where.setCurrentText("selected shape")
    worker = work.run_zero_shot(work.zero_shot.classes())
    _wait(qtbot, worker)
    on_focus = work.last_zero_shot
    regions.selected_data = {1}
    _wait(qtbot, work.run_zero_shot(work.zero_shot.classes()))
    on_node = work.last_zero_shot
    named = next(c for c in on_focus.probabilities if ("carcinoma" in c or "tumour" in c) and not c.startswith("no"))
    assert on_focus.probabilities[named] > on_node.probabilities[named], (on_focus, on_node)
    assert len(next(iter(on_node.heatmaps.values())).values) == node.patches, "the region's patches only"
    assert "selected shape" in work.status.text()
    regions.selected_data = set()
    assert work.run_zero_shot(work.zero_shot.classes()) is None  # no shape selected: said in words, no worker
    assert work.errors and "no shape is selected" in work.errors[-1]
    work.zero_shot.where.setCurrentText("whole slide")

    # a report checked here: against the selected region only
    report = ReportWidget(viewer, ReportStore(tmp_path / "reports"))
    report.errors = work.errors
    viewer.layers.selection.active = slide_layer
    viewer.layers.selection.active = regions
    assert report.layer is slide_layer, "selecting a region keeps the report on its slide"
    report.check_scope.setCurrentText("selected shape")
    supports = {}
    for shape, name in ((0, "focus"), (1, "node")):
        regions.selected_data = {shape}
        report.editor.setPlainText("Metastatic carcinoma is present in the lymph node.")
        _wait(qtbot, report.check_text())
        assert report.check_result is not None and "against the selected shape" in report.status.text(), (
            report.status.text()
        )
        supports[name] = report.check_result.sentences[0].support
        report.check_result = None
    assert supports["focus"] > supports["node"], supports
    viewer.window.resize(1500, 1000)
    measure_dock.setMinimumWidth(620)
    qtbot.wait(300)
    measure_dock.grab().save(str(output_dir / "region-statistics.png"))
