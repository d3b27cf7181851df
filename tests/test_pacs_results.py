"""Results to the archive from the command line and the PACS dock, and a thumbnail per series in the dock:
against a real Orthanc (``tests/orthanc.py``), read back with highdicom."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_pathalign._napari.preferences import PLUGIN
from napari_pathalign.cli.main import main
from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io import open_slide
from napari_pathalign.io.annotations import Annotation, write_annotations
from napari_pathalign.io.dicom_annotations import read_bulk_annotations
from napari_pathalign.io.dicom_results import read_report_sr
from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection
from napari_pathalign.io.dicomweb_thumbnail import series_thumbnail
from napari_pathalign.io.report_files import write_report_json
from tests.orthanc import slide_file, slide_url

CREDENTIAL_VARIABLES = ("PATHALIGN_DICOMWEB_TOKEN", "PATHALIGN_DICOMWEB_USER", "PATHALIGN_DICOMWEB_PASSWORD")
TEXT = "Invasive carcinoma is present. No necrosis is seen."
SENTENCES = [
    {"text": "Invasive carcinoma is present.", "support": 0.83, "claims": [], "evidence_xy_level0": [[224, 448]]},
    {"text": "No necrosis is seen.", "support": 0.41, "claims": []},
]
PROVENANCE = {"model": "pathalign-embedded", "prompt": "Final diagnosis:"}
KEY = "a-site-secret-of-32-characters!!"


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def cmu_heatmap() -> Heatmap:
    """A map over the CMU-1 slide (2220 x 2967 px): one value per 224-px patch."""
    xy = np.array([[x, y] for y in range(448, 2700, 224) for x in range(224, 2000, 224)])
    return Heatmap(np.linspace(0, 1, len(xy)), xy, 224, 0.499, kind="attention", label="attention")


def tumour_region() -> Annotation:
    ring = [[224, 448], [672, 448], [672, 896], [224, 896], [224, 448]]
    return Annotation({"type": "Polygon", "coordinates": [ring]}, "Tumor", color=(200, 0, 0))


def headers(folder) -> dict[str, pydicom.Dataset]:
    """ImageType value 3 (VOLUME, LABEL, ...) -> an instance's header, for the slide's local files."""
    found = {}
    for f in sorted(folder.glob("*.dcm")):
        d = pydicom.dcmread(f, stop_before_pixels=True)
        found.setdefault(d.ImageType[2], d)
    return found


def read_back(orthanc, study_uid: str, files: list) -> list[pydicom.Dataset]:
    """The instances of ``files`` as the server holds them."""
    with DicomWebConnection(orthanc.dicomweb) as pacs:
        out = []
        for f in files:
            ds = pydicom.dcmread(f)
            out.append(pacs.retrieve(study_uid, ds.SeriesInstanceUID, ds.SOPInstanceUID))
        return out


# -- the command line -------------------------------------------------------------------------------------


def test_the_cli_exports_and_sends_a_report_heatmap_and_regions(orthanc, wsi_dir, tmp_path, capsys):
    pytest.importorskip("torch")  # --heatmap text: analyses the slide with the shipped models
    url = slide_url(orthanc, wsi_dir, "cmu-1")
    study = DicomWebAddress.parse(url).study_uid
    report = write_report_json(TEXT, PROVENANCE, SENTENCES, tmp_path / "report.json")
    regions = write_annotations([tumour_region()], tmp_path / "regions.geojson")
    out = tmp_path / "dicom"
    args = ["export-dicom", url, "--out", str(out), "--report", str(report), "--regions", str(regions)]
    # a short phrase: the map's title names the regions' measurement, a DICOM code meaning of at most 64
    # characters, and regions_bulk_annotations refuses a longer one ("metastatic carcinoma" makes 68)
    args += ["--heatmap", "text:carcinoma", "--evidence", "3", "--send"]
    args += ["--cache-dir", str(tmp_path / "features"), "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    files = [out / "report-sr.dcm", out / "heatmap-pm.dcm", out / "regions-ann.dcm"]
    assert all(f.is_file() for f in files) and f"into study {study}" in printed

    sr, pm, ann = read_back(orthanc, study, files)
    read = read_report_sr(sr)
    assert read.text == TEXT and [s["text"] for s in read.sentences] == [s["text"] for s in SENTENCES]
    assert read.study_uid == study and read.referenced_series == [DicomWebAddress.parse(url).series_uid]
    pm = hd.pm.ParametricMap.from_dataset(pm)
    assert pm.StudyInstanceUID == study and "carcinoma" in pm.ContentDescription
    assert np.isfinite(pm.pixel_array).any()
    regions_back = read_bulk_annotations(ann).annotations
    drawn = [a for a in regions_back if a.classification == "Tumor"]
    evidence = [a for a in regions_back if a.classification == "Evidence"]
    assert len(drawn) == 1 and len(evidence) == 3
    np.testing.assert_array_equal(drawn[0].positions()[:4], tumour_region().positions()[:4])
    assert all("carcinoma" in " ".join(a.properties["measurements"]) for a in evidence)

    # the same files again: refused before anything is analysed, written or sent
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err


def test_the_cli_de_identifies_with_a_key_from_the_environment(orthanc, wsi_dir, tmp_path, capsys, monkeypatch):
    folder = slide_file(wsi_dir, "cmu-1")  # a local DICOM slide: its metadata comes from the files
    report = write_report_json(TEXT, PROVENANCE, SENTENCES, tmp_path / "report.json")
    args = ["export-dicom", str(folder), "--report", str(report), "--out", str(tmp_path / "out")]
    monkeypatch.delenv("SITE_KEY", raising=False)
    assert main([*args, "--deidentify-key-env", "SITE_KEY"]) == 2
    assert "SITE_KEY: that environment variable is not set" in capsys.readouterr().err
    monkeypatch.setenv("SITE_KEY", KEY)
    assert main([*args, "--deidentify-key-env", "SITE_KEY"]) == 0
    assert KEY not in capsys.readouterr().out
    sr = pydicom.dcmread(tmp_path / "out" / "report-sr.dcm")
    source = headers(folder)["VOLUME"]
    assert sr.PatientIdentityRemoved == "YES" and sr.StudyInstanceUID != source.StudyInstanceUID
    assert read_report_sr(sr).text == TEXT

    assert main([*args, "--send"]) == 2  # a local slide has no server to go back to
    assert "--send needs --server URL" in capsys.readouterr().err
    assert main(["export-dicom", str(wsi_dir / "CMU-1-Small-Region.svs"), "--report", str(report), "--out", "x"]) == 2
    assert "is not DICOM" in capsys.readouterr().err
    assert main(["export-dicom", str(folder), "--out", str(tmp_path / "o2")]) == 2
    assert "nothing to export" in capsys.readouterr().err


# -- the dock ---------------------------------------------------------------------------------------------


def open_dock(make_napari_viewer, monkeypatch):
    errors = []
    monkeypatch.setattr("napari_pathalign._napari.status_line.show_error", errors.append)
    viewer = make_napari_viewer(show=False)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Slides from PACS")
    return viewer, dock, errors


def search_all(dock, qtbot, orthanc, errors) -> None:
    dock.url.setText(orthanc.dicomweb)
    dock.search()
    qtbot.waitUntil(
        lambda: (dock.search_button.isEnabled() and "found" in dock.status.text()) or bool(errors), timeout=20000
    )
    assert not errors, errors


def exported(dock) -> bool:
    return dock.send_button.isEnabled() and dock.last_export is not None


def row_of(dock, url: str) -> int:
    return next(k for k, (_, series) in enumerate(dock.hits) if series.url == url)


def test_a_thumbnail_per_series_from_its_thumbnail_or_volume_never_its_label(
    make_napari_viewer, qtbot, orthanc, wsi_dir, monkeypatch, output_dir
):
    viewer, dock, errors = open_dock(make_napari_viewer, monkeypatch)
    search_all(dock, qtbot, orthanc, errors)
    assert len(dock.hits) >= 3
    qtbot.waitUntil(lambda: dock.thumbnails_done() and len(dock.thumbnails) >= 3, timeout=30000)
    viewer.window.resize(1400, 900)
    qtbot.wait(200)
    dock.grab().save(str(output_dir / "pacs-dock.png"))  # looked at: the series list with its thumbnails

    url = slide_url(orthanc, wsi_dir, "cmu-1")
    series = DicomWebAddress.parse(url).series_uid
    thumb = dock.thumbnails[(orthanc.dicomweb, series)]
    local = headers(slide_file(wsi_dir, "cmu-1"))  # it has LABEL, OVERVIEW, THUMBNAIL and VOLUME instances
    assert {"LABEL", "OVERVIEW"} <= set(local)
    assert thumb.image_type == "THUMBNAIL" and thumb.instance_uid == local["THUMBNAIL"].SOPInstanceUID
    assert thumb.instance_uid not in (local["LABEL"].SOPInstanceUID, local["OVERVIEW"].SOPInstanceUID)
    assert max(thumb.rgb.shape[:2]) == 128 and thumb.rgb.dtype == np.uint8
    with open_slide(url) as slide:  # looks like the slide: its mean colour is the coarsest level's
        coarse = np.asarray(slide.levels[-1]).reshape(-1, 3).mean(0)
        h, w = slide.shape_level0
    assert np.abs(thumb.rgb.reshape(-1, 3).mean(0) - coarse).max() < 5
    assert abs(thumb.rgb.shape[1] / thumb.rgb.shape[0] - w / h) < 0.02  # not the label's or overview's shape

    icon = dock.results.item(row_of(dock, url)).icon().pixmap(64, 64).toImage()
    centre = icon.pixelColor(icon.width() // 2, icon.height() // 2)
    assert (centre.red(), centre.green(), centre.blue()) != (70, 70, 70)  # the picture, not the placeholder

    # a slide without a thumbnail instance: its coarsest level, assembled from 25 frames, pixel for pixel
    url = slide_url(orthanc, wsi_dir, "highdicom")
    thumb = dock.thumbnails[(orthanc.dicomweb, DicomWebAddress.parse(url).series_uid)]
    with open_slide(url) as slide:
        assert thumb.image_type == "VOLUME"
        np.testing.assert_array_equal(thumb.rgb, np.asarray(slide.levels[0]))

    # cached per series: a second search fetches nothing and shows the pictures at once
    before = dict(dock.thumbnails)
    search_all(dock, qtbot, orthanc, errors)
    assert dock.thumbnail_worker is None and all(dock.thumbnails[k] is v for k, v in before.items())


def test_a_series_without_a_picture_says_why(orthanc):
    with DicomWebConnection(orthanc.dicomweb, Credentials()) as pacs:
        with pytest.raises(ValueError, match="no slide image small enough|HTTP 404|no such"):
            series_thumbnail(pacs, "1.2.3", "4.5.6")


def test_the_dock_sends_the_report_heatmap_and_drawn_regions_to_the_slides_study(
    make_napari_viewer, qtbot, orthanc, wsi_dir, tmp_path, monkeypatch
):
    from napari_pathalign._napari.heatmap_layers import heatmap_layer_data
    from napari_pathalign._napari.report_widget import slide_key
    from napari_pathalign.reporting.report_store import ReportStore

    viewer, dock, errors = open_dock(make_napari_viewer, monkeypatch)
    dock.report_store = ReportStore(tmp_path / "reports")
    search_all(dock, qtbot, orthanc, errors)
    url = slide_url(orthanc, wsi_dir, "cmu-1")
    dock.results.setCurrentRow(row_of(dock, url))
    dock.open_selected()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1 or bool(errors), timeout=20000)
    assert not errors, errors
    slide_layer = viewer.layers[0]
    slide = slide_layer.metadata["slide"]
    assert "For " in dock.export_slide.text()

    fingerprint, path = slide_key(slide)  # the Report dock's model draft, then the user's edit of it
    draft = {"text": TEXT, "sentences": SENTENCES, "provenance": PROVENANCE}
    dock.report_store.add_version(fingerprint, path, "draft", TEXT, "model", draft=draft)
    data, kwargs, _ = heatmap_layer_data(cmu_heatmap(), slide_layer)
    viewer.add_image(data, **kwargs)
    mpp = slide.mpp
    corners_rc = np.array([[448, 224], [448, 672], [896, 672], [896, 224]], float)  # level-0 rows, columns
    viewer.add_shapes(
        [(corners_rc - 0.5) * mpp], shape_type="polygon", name="drawn", units=("µm", "µm")
    )  # world µm, pixel centres
    viewer.layers.selection.active = slide_layer
    assert dock.regions_layer.currentText() == "drawn"

    dock.send()
    assert "Tick what to export" in dock.status.text()
    for box in (dock.export_report, dock.export_heatmap, dock.export_regions, dock.deidentify):
        box.setChecked(True)
    monkeypatch.delenv("PATHALIGN_DEID_KEY", raising=False)
    assert dock.send() is None and "PATHALIGN_DEID_KEY is not set" in dock.status.text()
    dock.deidentify.setChecked(False)
    errors.clear()  # the two refusals above, said in red as they should be

    dock.send()
    qtbot.waitUntil(
        lambda: dock.send_button.isEnabled() and dock.last_export is not None or bool(errors), timeout=30000
    )
    assert not errors, errors
    sent = dock.last_export
    study = DicomWebAddress.parse(url).study_uid
    assert sent.study_uid == study and "into the slide's study" in dock.status.text()
    with DicomWebConnection(orthanc.dicomweb) as pacs:
        back = []
        for uid in sent.sop_instance_uids:
            found = pacs.client.search_for_instances(study, search_filters={"SOPInstanceUID": uid})
            back.append(pacs.retrieve(study, found[0]["0020000E"]["Value"][0], uid))
    sr, pm, ann = back
    assert read_report_sr(sr).text == TEXT and read_report_sr(sr).provenance == PROVENANCE
    pm = hd.pm.ParametricMap.from_dataset(pm)
    raster = cmu_heatmap().raster().image
    np.testing.assert_array_equal(pm.pixel_array.reshape(raster.shape), raster)
    regions = read_bulk_annotations(ann).annotations
    assert len(regions) == 1
    np.testing.assert_allclose(regions[0].positions()[:4], corners_rc[:, ::-1], atol=1e-3)
    assert "attention [raw]" in regions[0].properties["measurements"]

    # saved as files too, de-identified; never over existing files
    monkeypatch.setenv("PATHALIGN_DEID_KEY", KEY)
    dock.deidentify.setChecked(True)
    dock.last_export = None
    dock.save_as(tmp_path)
    qtbot.waitUntil(
        lambda: dock.send_button.isEnabled() and dock.last_export is not None or bool(errors), timeout=30000
    )
    assert not errors, errors
    files = sorted(tmp_path.glob("*.dcm"))
    assert [f.name for f in files] == ["heatmap-pm.dcm", "regions-ann.dcm", "report-sr.dcm"]
    assert all(pydicom.dcmread(f).PatientIdentityRemoved == "YES" for f in files)
    assert KEY not in dock.status.text()
    assert dock.save_as(tmp_path) is None and "already in" in dock.status.text()
