"""Results back to the archive as DICOM (highdicom): a report as a Comprehensive SR and a heatmap as a
Parametric Map, both in the slide's study and referencing its series, so a PACS viewer shows them beside it.

The writers take plain data (the report's text, ``Draft.to_dict()``'s sentences and provenance, a
``Heatmap``) and the slide's level-0 instance metadata (``source``: a pydicom Dataset read from the file
or fetched with WADO-RS), never a reporting object, so they sit in ``io``. ``read_report_sr`` reads a
report SR back into the same plain data.

Concepts without a standard code use the private coding scheme ``99PATHALIGN`` (DICOM reserves ``99``
prefixes for local schemes); values that are not numbers or text (a claim, a provenance entry) are JSON.
Drawn regions go as bulk annotations (``dicom_annotations.py``); every builder takes ``deidentify_key`` to
de-identify its result (``deidentify.py``), for a file and for STOW-RS alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write
from napari_pathalign.core.heatmap import Heatmap

SCHEME = "99PATHALIGN"
MANUFACTURER = "napari-pathalign"
SERIES_NUMBER_REPORT = 9001  # high numbers: results sort after the scanner's series
SERIES_NUMBER_MAP = 9002


def _codes():
    from highdicom.sr import CodedConcept

    return {
        "report": CodedConcept("11526-1", "LN", "Pathology study"),
        "findings": CodedConcept("121070", "DCM", "Findings"),
        "finding": CodedConcept("121071", "DCM", "Finding"),
        "support": CodedConcept("support", SCHEME, "Support probability"),
        "claim": CodedConcept("claim", SCHEME, "Claim"),
        "evidence": CodedConcept("evidence", SCHEME, "Evidence (level-0 x, y)"),
        "provenance": CodedConcept("provenance", SCHEME, "Provenance"),
    }


@dataclass
class ReportSR:
    """A report read back from a Comprehensive SR."""

    text: str  # the whole report
    sentences: list[dict]  # {'text', 'support', 'claims', 'evidence_xy_level0'} per sentence
    provenance: dict  # model, weights hashes, prompt, time ... as written
    study_uid: str  # the slide's study
    referenced_series: list[str] = field(default_factory=list)  # the slide's series, from the SR's evidence


def report_sr(
    source,
    report_text: str,
    sentences: list[dict],
    provenance: dict,
    series_uid: str | None = None,
    deidentify_key: str | bytes | None = None,
):
    """The report as a highdicom ``ComprehensiveSR`` in ``source``'s study, with ``source`` as its evidence.

    ``sentences`` are ``Draft.to_dict()['sentences']`` (``text`` required; ``support``, ``claims``,
    ``evidence_xy_level0`` used when present); the SR is a draft (not complete, not verified): a
    pathologist signs a report, not this plugin. ``deidentify_key``: de-identify it (``io.deidentify``).
    """
    from highdicom import UID
    from highdicom.sr import (
        ComprehensiveSR,
        ContainerContentItem,
        NumContentItem,
        RelationshipTypeValues,
        TextContentItem,
    )
    from pydicom.sr.codedict import codes

    from napari_pathalign.io.report_files import plain_json

    if not isinstance(report_text, str):
        raise ValueError(f"report_text must be a str, got {type(report_text).__name__}")
    if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, dict) and "text" in s for s in sentences):
        raise ValueError("sentences must be a list of dicts with 'text' (Draft.to_dict()['sentences'])")
    if not isinstance(provenance, dict):
        raise ValueError(f"provenance must be a dict (Draft.to_dict()['provenance']), got {type(provenance).__name__}")
    check_source(source)
    sentences, provenance = plain_json(list(sentences), "sentences"), plain_json(provenance, "provenance")
    c = _codes()
    contains = RelationshipTypeValues.CONTAINS
    has_properties = RelationshipTypeValues.HAS_PROPERTIES
    items = [TextContentItem(c["findings"], report_text or " ", contains)]
    for s in sentences:
        children = []
        if s.get("support") is not None:
            children.append(
                NumContentItem(c["support"], float(s["support"]), codes.UCUM.NoUnits, relationship_type=has_properties)
            )
        for claim in s.get("claims") or []:
            children.append(TextContentItem(c["claim"], json.dumps(claim, ensure_ascii=False), has_properties))
        if s.get("evidence_xy_level0"):
            children.append(TextContentItem(c["evidence"], json.dumps(s["evidence_xy_level0"]), has_properties))
        item = TextContentItem(c["finding"], s["text"] or " ", contains)
        if children:
            item.ContentSequence = children
        items.append(item)
    for key, value in provenance.items():
        items.append(TextContentItem(c["provenance"], json.dumps({key: value}, ensure_ascii=False), contains))
    root = ContainerContentItem(c["report"], template_id=None)
    root.ContentSequence = items
    sr = ComprehensiveSR(
        evidence=[source],
        content=root,
        series_instance_uid=series_uid or UID(),
        series_number=SERIES_NUMBER_REPORT,
        sop_instance_uid=UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=False,
        is_verified=False,
        series_description="PathAlign draft report",
    )
    return finish(sr, deidentify_key)


def read_report_sr(dataset_or_path) -> ReportSR:
    """Read a report SR written by ``report_sr`` (a file or a pydicom Dataset) back into plain data."""
    import pydicom

    ds = dataset_or_path if isinstance(dataset_or_path, pydicom.Dataset) else pydicom.dcmread(dataset_or_path)
    if getattr(ds, "Modality", None) != "SR" or "ContentSequence" not in ds:
        raise ValueError(f"not a structured report (modality {getattr(ds, 'Modality', None)!r}); expected an SR")
    text, sentences, provenance = "", [], {}
    for item in ds.ContentSequence:
        code = item.ConceptNameCodeSequence[0].CodeValue
        if code == "121070":
            text = item.TextValue.strip()
        elif code == "121071":
            sentence = {"text": item.TextValue.strip(), "support": None, "claims": [], "evidence_xy_level0": []}
            for child in item.get("ContentSequence", []):
                what = child.ConceptNameCodeSequence[0].CodeValue
                if what == "support":
                    sentence["support"] = float(child.MeasuredValueSequence[0].NumericValue)
                elif what == "claim":
                    sentence["claims"].append(json.loads(child.TextValue))
                elif what == "evidence":
                    sentence["evidence_xy_level0"] = json.loads(child.TextValue)
            sentences.append(sentence)
        elif code == "provenance":
            provenance.update(json.loads(item.TextValue))
    series = [
        s.SeriesInstanceUID
        for study in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
        for s in study.get("ReferencedSeriesSequence", [])
    ]
    return ReportSR(text, sentences, provenance, str(ds.StudyInstanceUID), series)


def heatmap_parametric_map(
    source, heatmap: Heatmap, series_uid: str | None = None, deidentify_key: str | bytes | None = None
):
    """The heatmap as a highdicom ``ParametricMap`` over the slide's total pixel matrix: one map pixel per patch.

    The map lies on the slide: its pixel spacing is the patch pitch and its first pixel sits on the first
    patch, in the slide's frame of reference. Patches not measured are NaN (float pixels).
    ``deidentify_key``: de-identify it (``io.deidentify``).
    """
    from highdicom import (
        UID,
        PixelMeasuresSequence,
        PlaneOrientationSequence,
        PlanePositionSequence,
        VOILUTTransformation,
    )
    from highdicom.enum import CoordinateSystemNames
    from highdicom.pm import ParametricMap, RealWorldValueMapping
    from pydicom.sr.codedict import codes

    check_source(source)
    if len(heatmap) == 0:
        raise ValueError("the heatmap has no patches; nothing to write")
    raster = heatmap.raster()
    image = np.asarray(raster.image, np.float32)  # (rows, cols), NaN where no patch
    spacing_mm = [float(v) for v in source.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    pitch = heatmap.size_level0
    row0, col0 = raster.origin_rc
    finite = image[np.isfinite(image)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    mapping = RealWorldValueMapping(
        lut_label="value",
        lut_explanation=heatmap.title[:64],
        unit=codes.UCUM.NoUnits,
        value_range=(lo, hi if hi > lo else lo + 1.0),
        slope=1.0,
        intercept=0.0,
    )
    orientation = [float(v) for v in source.ImageOrientationSlide]
    # the slide position of the map's first pixel: the source's origin moved by whole patches
    origin = source.TotalPixelMatrixOriginSequence[0]
    x0 = float(origin.XOffsetInSlideCoordinateSystem)
    y0 = float(origin.YOffsetInSlideCoordinateSystem)
    ox, oy = col0 * pitch, row0 * pitch  # level-0 pixels
    position = PlanePositionSequence(
        CoordinateSystemNames.SLIDE,
        image_position=(
            x0 + ox * spacing_mm[1] * orientation[0] + oy * spacing_mm[0] * orientation[3],
            y0 + ox * spacing_mm[1] * orientation[1] + oy * spacing_mm[0] * orientation[4],
            0.0,
        ),
        pixel_matrix_position=(1, 1),
    )
    pm = ParametricMap(
        source_images=[source],
        pixel_array=image[None],  # (1, rows, cols): one frame, the whole map
        series_instance_uid=series_uid or UID(),
        series_number=SERIES_NUMBER_MAP,
        sop_instance_uid=UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=str(heatmap.params.get("model", "pathalign"))[:64] or "pathalign",
        software_versions="0.1",
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[VOILUTTransformation(window_center=(lo + hi) / 2, window_width=max(hi - lo, 1e-6))],
        content_description=heatmap.title[:64],
        content_label=heatmap.kind.upper().replace("-", "_")[:16] or "HEATMAP",
        pixel_measures=PixelMeasuresSequence(
            pixel_spacing=(spacing_mm[0] * pitch, spacing_mm[1] * pitch), slice_thickness=None
        ),
        plane_orientation=PlaneOrientationSequence(CoordinateSystemNames.SLIDE, orientation),
        plane_positions=[position],
    )
    return finish(pm, deidentify_key)


def write_dicom(dataset, path, overwrite: bool = False) -> Path:
    """Write a DICOM dataset (``report_sr``, ``heatmap_parametric_map``, ``regions_bulk_annotations``) atomically."""
    path = Path(path)
    if path.suffix.lower() != ".dcm":
        raise ValueError(f"cannot write DICOM to {path.name!r}: the suffix is {path.suffix!r}; expected '.dcm'")
    with atomic_write(path, overwrite=overwrite) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path


# highdicom records the scanner as contributing equipment; where and by whom it stands is not ours to repeat
SITE_DETAILS = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    "OperatorsName",
)


def finish(dataset, deidentify_key: str | bytes | None):
    """Every export's last step: the scanner's site details dropped, then de-identified with the site's key
    when one is given. An identified export carries the slide's patient, study and specimen modules (the
    archive files it by them) and its UIDs, nothing else of the slide."""
    for item in dataset.get("ContributingEquipmentSequence", []):
        for keyword in SITE_DETAILS:
            if keyword in item:
                delattr(item, keyword)
    if deidentify_key is None:
        return dataset
    from napari_pathalign.io.deidentify import deidentify

    return deidentify(dataset, deidentify_key)


def check_source(source) -> None:
    """Raise ValueError unless ``source`` is a slide instance's metadata (modality SM, with its UIDs)."""
    import pydicom

    if not isinstance(source, pydicom.Dataset):
        raise ValueError(
            f"source must be the slide's instance metadata (a pydicom Dataset), got {type(source).__name__}"
        )
    missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if k not in source]
    if missing or getattr(source, "Modality", None) != "SM":
        raise ValueError(
            f"source must be an instance of the slide (modality SM with its UIDs); got modality "
            f"{getattr(source, 'Modality', None)!r}, missing {missing or 'nothing'}"
        )
    kind = set(source.get("ImageType", [])) & {"LABEL", "OVERVIEW", "THUMBNAIL"}
    if kind:  # a label or overview can show the patient's name: results never point at one
        raise ValueError(
            f"source is the slide's {kind.pop()} image; results go on the level-0 VOLUME image "
            "(DicomWebConnection.slide_source picks it)"
        )
