"""Results as DICOM (highdicom), read back with highdicom: from a file and after STOW-RS to a real Orthanc."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io.dicom_results import heatmap_parametric_map, read_report_sr, report_sr, write_dicom
from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection
from tests.orthanc import slide_url

SENTENCES = [
    {
        "text": "Invasive carcinoma is present.",
        "support": 0.83,
        "claims": [{"kind": "tissue", "value": "tumour", "phrase": "carcinoma", "probability": 0.8, "basis": "zs"}],
        "evidence_xy_level0": [[224, 448], [672, 896]],
    },
    {"text": "No necrosis is seen.", "support": 0.41, "claims": []},
]
PROVENANCE = {
    "model": "pathalign-embedded",
    "weights_sha256": "ab12",
    "prompt": "Describe the slide.",
    "grid": {"patch": 224},
}
TEXT = "Invasive carcinoma is present. No necrosis is seen."


@pytest.fixture
def source(cmu1_level0_dicom) -> pydicom.Dataset:
    return cmu1_level0_dicom


def heatmap() -> Heatmap:
    xy = np.array([[x, y] for y in range(448, 2700, 224) for x in range(224, 2000, 224)])
    values = np.linspace(0, 1, len(xy), dtype=np.float32)
    values[3] = np.nan  # a patch that was not measured
    return Heatmap(values=values, xy_level0=xy, size_level0=224, mpp=0.499, kind="attention", label="attention")


def check_report(read, source):
    assert read.text == TEXT and read.provenance == PROVENANCE
    assert [s["text"] for s in read.sentences] == [s["text"] for s in SENTENCES]
    assert [s["support"] for s in read.sentences] == [0.83, 0.41]
    assert read.sentences[0]["claims"] == SENTENCES[0]["claims"]
    assert read.sentences[0]["evidence_xy_level0"] == SENTENCES[0]["evidence_xy_level0"]
    assert read.study_uid == source.StudyInstanceUID and read.referenced_series == [source.SeriesInstanceUID]


def check_map(ds, source, hm: Heatmap):
    pm = hd.pm.ParametricMap.from_dataset(ds)
    raster = hm.raster()
    np.testing.assert_array_equal(pm.pixel_array.reshape(raster.image.shape), raster.image)  # NaN where NaN
    assert pm.StudyInstanceUID == source.StudyInstanceUID and pm.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    spacing = pm.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert float(spacing[0]) == pytest.approx(0.000499 * 224, rel=1e-3)  # one map pixel per 224-px patch, in mm
    # the first map pixel sits on the first patch (x 224, y 448 level-0 pixels from the slide's origin)
    origin, source_origin = pm.TotalPixelMatrixOriginSequence[0], source.TotalPixelMatrixOriginSequence[0]
    moved = sorted(
        abs(
            float(getattr(origin, f"{a}OffsetInSlideCoordinateSystem"))
            - float(getattr(source_origin, f"{a}OffsetInSlideCoordinateSystem"))
        )
        for a in "XY"
    )
    assert moved == pytest.approx(sorted([224 * 0.000499, 448 * 0.000499]), rel=1e-3)


def test_a_report_sr_written_to_a_file_reads_back(source, tmp_path):
    path = write_dicom(report_sr(source, TEXT, SENTENCES, PROVENANCE), tmp_path / "report.dcm")
    sr = hd.sr.srread(path)
    assert (
        isinstance(sr, hd.sr.ComprehensiveSR) and sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    )
    assert sr.PatientID == source.PatientID
    check_report(read_report_sr(path), source)
    with pytest.raises(FileExistsError):
        write_dicom(report_sr(source, TEXT, SENTENCES, PROVENANCE), path)


def test_a_heatmap_parametric_map_written_to_a_file_reads_back(source, tmp_path):
    hm = heatmap()
    path = write_dicom(heatmap_parametric_map(source, hm), tmp_path / "attention.dcm")
    check_map(pydicom.dcmread(path), source, hm)


def test_results_stored_on_the_archive_read_back(orthanc, wsi_dir):
    address = DicomWebAddress.parse(slide_url(orthanc, wsi_dir, "cmu-1"))
    with DicomWebConnection(address.root, Credentials()) as pacs:
        source = pacs.slide_source(address.study_uid, address.series_uid)
        sr, pm = report_sr(source, TEXT, SENTENCES, PROVENANCE), heatmap_parametric_map(source, heatmap())
        pacs.store([sr, pm], address.study_uid)
        series = {h.modality: h for h in pacs.search_series(address.study_uid)}
        assert {"SM", "SR"} <= set(series), series
        check_report(read_report_sr(pacs.retrieve(address.study_uid, sr.SeriesInstanceUID, sr.SOPInstanceUID)), source)
        check_map(pacs.retrieve(address.study_uid, pm.SeriesInstanceUID, pm.SOPInstanceUID), source, heatmap())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda src: report_sr(src, TEXT, [{"support": 1}], {}), "with 'text'"),
        (lambda src: report_sr(pydicom.examples.ct, TEXT, [], {}), "modality SM"),
        (
            lambda src: heatmap_parametric_map(src, Heatmap(np.zeros(0), np.zeros((0, 2)), 224, 0.5, "a", "a")),
            "no patches",
        ),
    ],
)
def test_bad_input_says_what_is_expected(source, call, message):
    import pydicom.examples  # noqa: F401

    with pytest.raises(ValueError, match=message):
        call(source)
