"""De-identified exports (PS3.15 Basic Profile) hold no identifier of the slide's patient anywhere in their bytes,
keep their references to each other, and store on a real Orthanc; no export ever carries a label or macro image."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io.annotations import Annotation
from napari_pathalign.io.deidentify import deidentify, pseudonym, pseudonym_uid
from napari_pathalign.io.dicom_annotations import evidence_annotations, read_bulk_annotations, regions_bulk_annotations
from napari_pathalign.io.dicom_results import heatmap_parametric_map, read_report_sr, report_sr, write_dicom
from napari_pathalign.io.dicomweb import DicomWebConnection

KEY = "site-secret-0123456789abcdef"
# what the scanner and the hospital put into the slide: none of it may leave in a de-identified export
IDENTIFIERS = {
    "PatientName": "Doeberg^Janelle",
    "PatientID": "MRN00427731",
    "PatientBirthDate": "19610407",
    "PatientSex": "F",
    "PatientAge": "062Y",
    "OtherPatientIDs": "OTHERID5531",
    "AccessionNumber": "ACC99117",
    "ReferringPhysicianName": "Housemann^Gregor",
    "StudyID": "STY5521",
    "StudyDate": "20240115",
    "StudyTime": "101500",
    "InstitutionName": "St Elsewhere Hospital",
    "StationName": "SCANNER7",
    "DeviceSerialNumber": "SN77121",
    "OperatorsName": "Operatorson^Tomas",
}
SECRETS = [
    "Doeberg",
    "Janelle",
    "MRN00427731",
    "19610407",
    "062Y",
    "OTHERID5531",
    "ACC99117",
    "Housemann",
    "Gregor",
    "STY5521",
    "20240115",
    "Elsewhere",
    "SCANNER7",
    "SN77121",
    "Operatorson",
    "S24-12345",
    "PRIVATE-NOTE",
]


@pytest.fixture(scope="module")
def slide(wsi_dir) -> dict:
    """The real CMU-1 DICOM slide's instances (metadata only) by ImageType: VOLUME, LABEL, OVERVIEW, THUMBNAIL."""
    files = sorted((wsi_dir / "CMU-1-Small-Region-dicom").glob("*.dcm"))
    return {d.ImageType[2]: d for d in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}


@pytest.fixture(scope="module")
def source(slide) -> pydicom.Dataset:
    """The slide's level-0 instance as a hospital would hold it: patient, visit, specimen and site identifiers."""
    ds = copy.deepcopy(slide["VOLUME"])
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    specimen = ds.SpecimenDescriptionSequence[0]
    specimen.SpecimenIdentifier = "S24-12345-A1"
    step = Dataset()
    step.TextValue = "block S24-12345-A1"  # free text in a preparation step repeats the identifier
    item = Dataset()
    item.SpecimenPreparationStepContentItemSequence = [step]
    specimen.SpecimenPreparationSequence = [item]
    ds.ContainerIdentifier = "S24-12345"
    ds.AcquisitionDateTime = "20240115103000"
    ds.add_new((0x0011, 0x0010), "LO", "HOSPITAL")
    ds.add_new((0x0011, 0x1001), "LO", "PRIVATE-NOTE")
    return ds


def heatmap() -> Heatmap:
    xy = np.array([[x, y] for y in range(448, 2700, 224) for x in range(224, 2000, 224)])
    values = np.linspace(0, 1, len(xy), dtype=np.float32)
    return Heatmap(values=values, xy_level0=xy, size_level0=224, mpp=0.499, kind="attention", label="attention")


def exports(source, key=None) -> list:
    hm = heatmap()
    region = Annotation({"type": "Polygon", "coordinates": [[[224, 448], [672, 448], [672, 896], [224, 448]]]}, "Tumor")
    return [
        report_sr(
            source,
            "Invasive carcinoma.",
            [{"text": "Invasive carcinoma.", "support": 0.8}],
            {"model": "m"},
            deidentify_key=key,
        ),
        heatmap_parametric_map(source, hm, deidentify_key=key),
        regions_bulk_annotations(source, [region, *evidence_annotations(hm, 3)], heatmap=hm, deidentify_key=key),
    ]


def written_bytes(datasets, folder: Path) -> list[bytes]:
    return [write_dicom(ds, folder / f"{k}.dcm").read_bytes() for k, ds in enumerate(datasets)]


def test_deidentified_exports_hold_no_identifier_in_their_bytes(source, tmp_path):
    original_uids = [
        source.StudyInstanceUID,
        source.SeriesInstanceUID,
        source.SOPInstanceUID,
        source.FrameOfReferenceUID,
        source.SpecimenDescriptionSequence[0].SpecimenUID,
    ]
    datasets = exports(source, KEY)
    for ds, data in zip(datasets, written_bytes(datasets, tmp_path)):
        leaked = [s for s in SECRETS + original_uids if s.encode() in data]
        assert leaked == [], f"{ds.Modality} export leaks {leaked}"
        read = pydicom.dcmread(io.BytesIO(data))
        assert read.PatientIdentityRemoved == "YES" and read.PatientID == pseudonym("MRN00427731", KEY)
        assert read.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert read.PatientBirthDate == "" and read.AccessionNumber == "" and read.StudyDate == ""
        assert read.file_meta.MediaStorageSOPInstanceUID == read.SOPInstanceUID
    # and each still reads as what it is
    sr, pm, ann = (pydicom.dcmread(tmp_path / f"{k}.dcm") for k in range(3))
    assert read_report_sr(sr).sentences[0]["text"] == "Invasive carcinoma."
    assert "113104" in [c.CodeValue for c in sr.DeidentificationMethodCodeSequence]  # its own text is kept
    assert np.isfinite(hd.pm.ParametricMap.from_dataset(pm).pixel_array).any()
    assert [a.classification for a in read_bulk_annotations(ann).annotations][0] == "Tumor"


def test_uids_are_remapped_consistently_so_exports_still_reference_the_slide(source):
    sr, pm, ann = exports(source, KEY)
    slide = deidentify(source, KEY)  # the slide itself, de-identified with the same key, elsewhere
    new_study = pseudonym_uid(source.StudyInstanceUID, KEY)
    assert sr.StudyInstanceUID == pm.StudyInstanceUID == ann.StudyInstanceUID == slide.StudyInstanceUID == new_study
    assert read_report_sr(sr).referenced_series == [slide.SeriesInstanceUID]
    assert ann.ReferencedImageSequence[0].ReferencedSOPInstanceUID == slide.SOPInstanceUID
    assert pm.FrameOfReferenceUID == slide.FrameOfReferenceUID
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # what a UID is (a standard one) is kept
    for ds in (sr, pm, ann):
        assert ds.SOPInstanceUID.startswith("2.25.") and len(ds.SOPInstanceUID) <= 64
    again = deidentify(source, KEY)
    assert again.PatientID == slide.PatientID and again.SOPInstanceUID == slide.SOPInstanceUID
    other = deidentify(source, "another-site-secret-key")
    assert other.PatientID != slide.PatientID and other.StudyInstanceUID != slide.StudyInstanceUID
    assert isinstance(ann, hd.ann.MicroscopyBulkSimpleAnnotations)  # still the highdicom class, for its readers


def test_a_short_key_is_refused_with_how_to_make_one(source):
    with pytest.raises(ValueError, match="at least 16 characters.*secrets.token_hex"):
        report_sr(source, "t", [{"text": "t"}], {}, deidentify_key="1234")


def test_identified_exports_carry_the_patient_and_study_but_not_the_site(source, tmp_path):
    """Without a key the archive files results by the slide's patient and study; the scanner's site stays out."""
    for data in written_bytes(exports(source), tmp_path):
        assert b"MRN00427731" in data and b"Doeberg" in data and source.StudyInstanceUID.encode() in data
        assert not [
            s for s in ("Elsewhere", "SCANNER7", "SN77121", "Operatorson", "PRIVATE-NOTE") if s.encode() in data
        ]


def test_no_export_carries_a_label_or_macro_image(slide, source, tmp_path):
    hidden = [slide[kind].SOPInstanceUID for kind in ("LABEL", "OVERVIEW", "THUMBNAIL")]
    for key in (None, KEY):
        folder = tmp_path / str(key)
        folder.mkdir()
        datasets = exports(source, key)
        for ds, data in zip(datasets, written_bytes(datasets, folder)):
            assert not set(ds.get("ImageType", [])) & {"LABEL", "OVERVIEW", "THUMBNAIL"}
            assert not [uid for uid in hidden if uid.encode() in data]  # not even a reference to one
            pixels = [k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds]
            if ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30":  # the parametric map: its own float pixels only
                assert pixels == ["FloatPixelData"]
                assert len(ds.FloatPixelData) == 4 * int(ds.Rows) * int(ds.Columns) * int(ds.NumberOfFrames)
            else:
                assert pixels == []
    for kind in ("LABEL", "OVERVIEW"):  # a result cannot even be put on one
        with pytest.raises(ValueError, match=f"{kind} image"):
            heatmap_parametric_map(slide[kind], heatmap())


def test_export_code_never_touches_associated_images():
    """Label and macro images live in ``Slide.associated``; no module that writes or sends results reads it."""
    root = Path(__file__).resolve().parents[1] / "napari_pathalign"
    writers = [
        *sorted((root / "io").glob("dicom_*.py")),
        root / "io" / "deidentify.py",
        root / "io" / "report_files.py",
        root / "io" / "heatmap_files.py",
        root / "_napari" / "pdf_export.py",
    ]
    assert [p.name for p in writers if "associated" in p.read_text()] == []


def test_a_deidentified_export_stores_on_the_archive_under_its_pseudonym(orthanc, source):
    ann = exports(source, KEY)[2]
    with DicomWebConnection(orthanc.dicomweb) as pacs:
        assert pacs.store([ann]) == [ann.SOPInstanceUID]  # its own (pseudonymous) study: no study in the URL
        [study] = pacs.search_studies(patient_id=pseudonym("MRN00427731", KEY), modality="ANN")
        assert study.study_uid == pseudonym_uid(source.StudyInstanceUID, KEY) and study.accession == ""
        back = pacs.retrieve(study.study_uid, ann.SeriesInstanceUID, ann.SOPInstanceUID)
    assert back.PatientIdentityRemoved == "YES" and str(back.PatientName) == pseudonym("Doeberg^Janelle", KEY)
    assert not [s for s in SECRETS if s in str(back)]


def test_every_attribute_the_profile_tables_name_is_a_dicom_keyword():
    """A misspelt keyword would silently leave its attribute in every export."""
    from pydicom.datadict import tag_for_keyword

    from napari_pathalign.io import deidentify as profile

    names = profile.REMOVE | profile.EMPTY | profile.PSEUDONYM | profile.EMPTY_SEQUENCES | set(profile.DUMMY_KEYWORDS)
    assert sorted(n for n in names if tag_for_keyword(n) is None) == []
