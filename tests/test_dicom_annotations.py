"""Regions and evidence as DICOM Microscopy Bulk Simple Annotations: read back from a file and from a real Orthanc
exact to the pixel; and STOW-RS that the archive refuses says which instance and why, storing nothing."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest

from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io import dicomweb
from napari_pathalign.io.annotations import Annotation
from napari_pathalign.io.dicom_annotations import (
    evidence_annotations,
    read_bulk_annotations,
    regions_bulk_annotations,
)
from napari_pathalign.io.dicom_results import write_dicom
from napari_pathalign.io.dicomweb import Credentials, DicomWebAddress, DicomWebConnection, StoreRejectedError
from tests.orthanc import Orthanc, slide_url


@pytest.fixture
def source(cmu1_level0_dicom) -> pydicom.Dataset:
    return cmu1_level0_dicom


def heatmap() -> Heatmap:
    xy = np.array([[x, y] for y in range(448, 2700, 224) for x in range(224, 2000, 224)])
    values = np.linspace(0, 1, len(xy), dtype=np.float32) ** 2  # not exact in float32 after the square
    values[3] = np.nan
    return Heatmap(values=values, xy_level0=xy, size_level0=224, mpp=0.499, kind="attention", label="attention")


def square(x, y, s):
    return [[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]


def regions() -> list[Annotation]:
    return [
        # exactly the four patches at x 224, 448 and y 448, 672: its heatmap value is their mean
        Annotation({"type": "Polygon", "coordinates": [square(224, 448, 448)]}, "Tumor", color=(200, 0, 0)),
        Annotation(  # sub-pixel vertices: written as float64, back to the bit
            {
                "type": "Polygon",
                "coordinates": [[[1000.1, 1000.2], [1300.7, 1010.3], [1150.05, 1400.9], [1000.1, 1000.2]]],
            },
            "Necrosis",
            properties={"measurements": {"Area µm^2": 12345.6, "Num Detections": 3}, "isLocked": True},
        ),
        Annotation({"type": "MultiPolygon", "coordinates": [[square(0, 0, 10)], [square(2200, 2940, 20)]]}, "Stroma"),
        Annotation({"type": "LineString", "coordinates": [[5, 5], [2220, 2967], [100, 7]]}),  # to the far corner
        Annotation({"type": "Point", "coordinates": [700.5, 900.25]}, "Lymphocyte"),
        Annotation({"type": "Polygon", "coordinates": [square(30, 40, 5)]}, "Tumor", object_type="detection"),
    ]


def parts(annotations) -> list[tuple]:
    """(class, objectType, single-part GeoJSON geometry) per part, as the DICOM groups hold them."""
    out = []
    for a in annotations:
        kind, coords = a.geometry["type"], a.geometry["coordinates"]
        singles = [("Polygon", p) for p in coords] if kind == "MultiPolygon" else [(kind, coords)]
        for single_kind, single in singles:
            out.append(
                (a.classification or "", a.object_type, json.dumps({"type": single_kind, "coordinates": single}))
            )
    return sorted(out)


def as_floats(annotations):
    """The same geometries with every coordinate a float (what reads back), for exact comparison."""
    out = []
    for a in annotations:
        geometry = json.loads(json.dumps(a.geometry), parse_int=float)
        out.append(Annotation(geometry, a.classification, object_type=a.object_type))
    return out


def check_read(read, source, written: list[Annotation], hm: Heatmap):
    assert read.study_uid == source.StudyInstanceUID and read.referenced_series == [source.SeriesInstanceUID]
    assert read.referenced_instance == source.SOPInstanceUID  # the level-0 image the pixels are on
    assert parts(read.annotations) == parts(as_floats(written))  # every vertex exact, to the bit
    by_class = {}
    for a in read.annotations:
        by_class.setdefault(a.classification, []).append(a)
    tumour = next(a for a in by_class["Tumor"] if a.object_type == "annotation")
    inside = [i for i, (x, y) in enumerate(hm.xy_level0) if x in (224, 448) and y in (448, 672)]
    assert len(inside) == 4
    expected = np.float32(np.nanmean(hm.values[inside]))
    assert tumour.properties["measurements"][hm.title] == pytest.approx(float(expected), rel=1e-6)
    assert tumour.color == (200, 0, 0)
    necrosis = by_class["Necrosis"][0].properties["measurements"]
    assert necrosis["Area µm^2"] == float(np.float32(12345.6)) and necrosis["Num Detections"] == 3.0
    for patch in by_class["Evidence"]:  # each evidence square carries its own patch's value
        (x, y) = patch.geometry["coordinates"][0][0]
        i = next(k for k, p in enumerate(hm.xy_level0) if tuple(p) == (x, y))
        assert patch.properties["measurements"][hm.title] == float(np.float32(hm.values[i]))
        assert patch.object_type == "tile"
    assert by_class[None][0].properties == {}  # the line touches no patch: no value, not a made-up one


def test_regions_and_evidence_written_to_a_file_read_back_exact(source, tmp_path):
    hm = heatmap()
    written = regions() + evidence_annotations(hm, top_k=5)
    path = write_dicom(regions_bulk_annotations(source, written, heatmap=hm), tmp_path / "regions.dcm")
    check_read(read_bulk_annotations(path), source, written, hm)

    ann = hd.ann.annread(path)  # what any DICOM viewer sees
    assert ann.Modality == "ANN" and ann.AnnotationCoordinateType == "2D" and ann.PixelOriginInterpretation == "VOLUME"
    groups = {(g.label, g.graphic_type.value, g.algorithm_type.value): g for g in ann.get_annotation_groups()}
    assert set(groups) == {
        ("Tumor", "POLYGON", "MANUAL"),
        ("Tumor", "POLYGON", "AUTOMATIC"),
        ("Necrosis", "POLYGON", "MANUAL"),
        ("Stroma", "POLYGON", "MANUAL"),
        ("Unclassified", "POLYLINE", "MANUAL"),
        ("Lymphocyte", "POINT", "MANUAL"),
        ("Evidence", "POLYGON", "AUTOMATIC"),
    }
    tumour = groups[("Tumor", "POLYGON", "MANUAL")]
    assert (tumour.annotated_property_type.value, tumour.annotated_property_type.scheme_designator) == (
        "108369006",
        "SCT",
    )
    assert groups[("Necrosis", "POLYGON", "MANUAL")].annotated_property_type.value == "6574001"
    assert groups[("Stroma", "POLYGON", "MANUAL")].annotated_property_type.scheme_designator == "99PATHALIGN"
    assert groups[("Stroma", "POLYGON", "MANUAL")].number_of_annotations == 2  # a MultiPolygon: one per part
    assert (
        "PointCoordinatesData" in tumour and "DoublePointCoordinatesData" in groups[("Necrosis", "POLYGON", "MANUAL")]
    )


def test_coordinates_are_level0_pixels_with_the_origin_at_the_first_pixels_corner(source, tmp_path):
    corners = [[0, 0], [2220, 0], [2220, 2967], [0, 2967]]  # the slide's outline: the last pixel's far corner
    outline = Annotation({"type": "Polygon", "coordinates": [corners + [[0, 0]]]}, "Tissue")
    read = read_bulk_annotations(write_dicom(regions_bulk_annotations(source, [outline]), tmp_path / "o.dcm"))
    assert read.annotations[0].geometry["coordinates"][0][:4] == corners
    off = Annotation({"type": "Point", "coordinates": [2221, 10]})
    with pytest.raises(ValueError, match="lies off the slide"):
        regions_bulk_annotations(source, [off])


def test_a_polygon_with_a_hole_is_refused_unless_its_exterior_is_asked_for(source):
    donut = Annotation({"type": "Polygon", "coordinates": [square(100, 100, 200), square(150, 150, 50)]}, "Tumor")
    with pytest.raises(ValueError, match="holes.*drop_holes=True"):
        regions_bulk_annotations(source, [donut])
    ann = regions_bulk_annotations(source, [donut], drop_holes=True)
    read = read_bulk_annotations(ann)
    assert read.annotations[0].geometry["coordinates"] == [[[float(v) for v in p] for p in square(100, 100, 200)]]


def test_evidence_is_the_heatmaps_best_patches_as_squares():
    hm = heatmap()
    patches = evidence_annotations(hm, top_k=3)
    best = hm.top_patches(3)
    assert [p.geometry["coordinates"][0][0] for p in patches] == [list(map(int, hm.xy_level0[i])) for i in best]
    assert all(p.geometry["coordinates"][0][2][0] - p.geometry["coordinates"][0][0][0] == 224 for p in patches)
    assert [p.properties["measurements"][hm.title] for p in patches] == [float(hm.values[i]) for i in best]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda src: regions_bulk_annotations(src, [{"type": "Point"}]), "list of napari_pathalign.io.Annotation"),
        (lambda src: regions_bulk_annotations(src, []), "no regions"),
        (lambda src: regions_bulk_annotations(pydicom.examples.ct, regions()), "modality SM"),
        (
            lambda src: regions_bulk_annotations(src, [Annotation({"type": "Circle", "coordinates": [1, 2]})]),
            "unknown geometry type .Circle.; expected one of Point",
        ),
        (lambda src: evidence_annotations(heatmap(), top_k=0), "top_k"),
        (lambda src: read_bulk_annotations(pydicom.examples.ct), "expected modality ANN"),
    ],
)
def test_bad_input_says_what_is_expected(source, call, message):
    import pydicom.examples  # noqa: F401

    with pytest.raises(ValueError, match=message):
        call(source)


def test_bulk_annotations_stored_on_the_archive_read_back(orthanc, wsi_dir):
    address = DicomWebAddress.parse(slide_url(orthanc, wsi_dir, "cmu-1"))
    hm = heatmap()
    written = regions() + evidence_annotations(hm, top_k=5)
    with DicomWebConnection(address.root, Credentials()) as pacs:
        source = pacs.slide_source(address.study_uid, address.series_uid)
        ann = regions_bulk_annotations(source, written, heatmap=hm)
        assert pacs.store([ann], address.study_uid) == [ann.SOPInstanceUID]
        assert [h.modality for h in pacs.search_series(address.study_uid, ann.SeriesInstanceUID)] == ["ANN"]
        back = pacs.retrieve(address.study_uid, ann.SeriesInstanceUID, ann.SOPInstanceUID)
    check_read(read_bulk_annotations(back), source, written, hm)


# -- STOW-RS refused ------------------------------------------------------------------------------


def test_results_for_another_study_are_refused_before_anything_is_sent(orthanc, wsi_dir, source):
    address = DicomWebAddress.parse(slide_url(orthanc, wsi_dir, "cmu-1"))
    other_study = hd.UID()
    ann = regions_bulk_annotations(source, regions())
    with DicomWebConnection(address.root, Credentials()) as pacs:
        with pytest.raises(ValueError, match=f"belongs to study {source.StudyInstanceUID}, not {other_study}.*nothing"):
            pacs.store([ann], other_study)
        assert pacs.search_series(address.study_uid, ann.SeriesInstanceUID) == []
        assert pacs.search_series(other_study) == []


def test_an_instance_the_archive_refuses_says_which_and_why(orthanc, wsi_dir, source, monkeypatch):
    """With our own check out of the way, Orthanc itself answers 409 for an instance sent to another study."""
    address = DicomWebAddress.parse(slide_url(orthanc, wsi_dir, "cmu-1"))
    monkeypatch.setattr(dicomweb, "check_storable", lambda *args: None)
    other_study = hd.UID()
    ann = regions_bulk_annotations(source, regions())
    with DicomWebConnection(address.root, Credentials()) as pacs:
        with pytest.raises(StoreRejectedError, match=r"did not store 1 of 1 .*HTTP 409.*ANN instance") as caught:
            pacs.store([ann], other_study)
        assert set(caught.value.failed) == {ann.SOPInstanceUID} and caught.value.stored == []
        assert "nothing of this call was stored" in str(caught.value)
        assert pacs.search_series(address.study_uid, ann.SeriesInstanceUID) == []
        assert pacs.search_series(other_study) == []


def test_an_archive_that_drops_an_instance_yet_answers_success_is_caught(tmp_path, source):
    """A storage policy (an Orthanc Lua filter refusing annotations) drops the instance; Orthanc's DICOMweb
    plugin still lists it as stored. The search after storing finds it missing."""
    server = Orthanc(tmp_path)
    policy = tmp_path / "policy.lua"
    policy.write_text('function ReceivedInstanceFilter(dicom, origin, info)\n  return dicom.Modality ~= "ANN"\nend\n')
    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "LuaScripts": [str(policy)]}))
    ann = regions_bulk_annotations(source, regions())
    with server, DicomWebConnection(server.dicomweb, Credentials()) as pacs:
        with pytest.raises(StoreRejectedError, match="answered as stored, but the server does not hold it"):
            pacs.store([ann], source.StudyInstanceUID)
        assert pacs.search_series(source.StudyInstanceUID) == []


def test_a_heatmap_title_over_64_characters_is_cut_in_the_code_meaning_only(tmp_path):
    """The text heatmap's own title ("similarity to 'metastatic carcinoma' minus tissue-phrase mean [raw]") is
    longer than a DICOM code meaning may be: the meaning is cut, the code value still tells two such titles apart."""
    from napari_pathalign.io.dicom_annotations import _local_code  # noqa: PLC2701 (the unit under test)

    long_a = "similarity to 'metastatic carcinoma' minus tissue-phrase mean [raw]"
    long_b = "similarity to 'metastatic carcinoma' minus tissue-phrase mean [rank]"
    a, b = _local_code("m", long_a), _local_code("m", long_b)
    assert len(a.meaning) == 64 and a.meaning.endswith("...") and a.meaning[:61] == long_a[:61]
    assert a.value != b.value and len(a.value) <= 16
    assert _local_code("m", "short").meaning == "short"
