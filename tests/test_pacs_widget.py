"""The PACS dock in a real viewer: search a real Orthanc by patient ID and modality, open the slide lazily."""

from __future__ import annotations

import numpy as np

from napari_pathalign._napari.preferences import PLUGIN


def test_search_by_patient_and_open_a_slide(make_napari_viewer, qtbot, orthanc, monkeypatch):
    for name in ("PATHALIGN_DICOMWEB_TOKEN", "PATHALIGN_DICOMWEB_USER", "PATHALIGN_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.status_line.show_error", errors.append)
    viewer = make_napari_viewer(show=False)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Slides from PACS")
    dock.url.setText(orthanc.dicomweb)
    dock.patient_id.setText("AA01")  # the highdicom test slide's patient
    dock.search()
    qtbot.waitUntil(
        lambda: dock.search_button.isEnabled() and "found" in dock.status.text() or bool(errors), timeout=20000
    )
    assert not errors and len(dock.hits) == 1 and dock.results.count() == 1
    assert "AA01" in dock.results.item(0).text() and "SM" in dock.results.item(0).text()
    dock.open_selected()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1 or bool(errors), timeout=20000)
    assert not errors
    slide = viewer.layers[0].metadata["slide"]
    assert slide.format == "dicomweb" and slide.shape_level0 == (50, 50)
    assert np.asarray(viewer.layers[0].data[0]).shape == (50, 50, 3)

    dock.patient_id.setText("")
    dock.date.setText("31/01/2024")
    assert dock.search() is None  # refused before any request
    assert errors and "expected YYYYMMDD" in errors[-1] and "expected YYYYMMDD" in dock.status.text()
    dock.date.setText("")
    dock.url.setText("ftp://pacs")
    assert dock.search() is None and "not a DICOMweb address" in dock.status.text()
