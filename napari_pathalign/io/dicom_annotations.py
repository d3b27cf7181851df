"""Drawn regions and evidence patches back to the archive as DICOM Microscopy Bulk Simple Annotations.

One ``AnnotationGroup`` per class and graphic type (a group has one graphic type), in 2D coordinates on
the slide's level-0 total pixel matrix. PS3.3 C.37.1.2 puts (0.0, 0.0) at the top-left corner of the
top-left pixel and (Columns, Rows) at the bottom-right corner of the last one (Pixel Origin Interpretation
VOLUME): exactly our level-0 (x, y) convention, QuPath's and ASAP's, so coordinates are written unchanged
(highdicom's ``AnnotationCoordinateTypeValues`` docstring speaks of pixel centres; the standard, and
highdicom's own ``ImageToReferenceTransformer``, use the corner). Coordinates go as float32 when every
one is exact in float32 (integers up to 2**24), else as float64 (Double Point Coordinates Data): a region
reads back exact to the bit either way. Measurements (a heatmap's value per region, QuPath measurements)
are float32, as the standard stores them.

What DICOM ANN cannot hold, and what happens to it:
- holes: a POLYGON is one ring; a polygon with holes is refused unless ``drop_holes=True`` writes its
  exterior (the holes' area then counts as inside: a tumour outline around necrosis would include it).
- multi-part geometries (MultiPolygon, MultiLineString, MultiPoint): one annotation per part; read back,
  each part is its own annotation.
- per-object names, ids and non-numeric properties: not written; the class is the group's label, the
  QuPath ``objectType`` its description, the class colour its recommended display colour.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from napari_pathalign.core.heatmap import Heatmap, patch_at
from napari_pathalign.io.annotations import Annotation, check_bounds
from napari_pathalign.io.dicom_results import MANUFACTURER, SCHEME, check_source, finish

SERIES_NUMBER_ANNOTATIONS = 9003  # after the report (9001) and the maps (9002)
EVIDENCE_CLASS = "Evidence"
UNCLASSIFIED = "Unclassified"
GRAPHIC = {"Polygon": "POLYGON", "LineString": "POLYLINE", "Point": "POINT"}


@dataclass
class BulkAnnotations:
    """Annotations read back from a Microscopy Bulk Simple Annotations instance."""

    annotations: list[Annotation]  # level-0 pixels; class = group label; measurements in properties
    study_uid: str  # the slide's study
    referenced_series: list[str] = field(default_factory=list)  # the slide's series
    referenced_instance: str = ""  # the level-0 image whose total pixel matrix the coordinates are on


def evidence_annotations(heatmap: Heatmap, top_k: int = 8, classification: str = EVIDENCE_CLASS) -> list[Annotation]:
    """The heatmap's ``top_k`` best patches as square regions (level-0 pixels), each with its value.

    The value is ``properties['measurements'][heatmap.title]``; patches without a value (NaN) are skipped.
    """
    if int(top_k) < 1:
        raise ValueError(f"top_k is how many patches to keep, >= 1; got {top_k!r}")
    size = int(heatmap.size_level0)
    out = []
    for i in heatmap.top_patches(int(top_k)):
        value = float(heatmap.values[i])
        if not np.isfinite(value):
            continue
        x, y = (int(v) for v in heatmap.xy_level0[i])
        ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
        out.append(
            Annotation(
                {"type": "Polygon", "coordinates": [ring]},
                classification=classification,
                object_type="tile",
                properties={"measurements": {heatmap.title: value}},
            )
        )
    return out


def regions_bulk_annotations(
    source,
    regions: list[Annotation],
    heatmap: Heatmap | None = None,
    series_uid: str | None = None,
    drop_holes: bool = False,
    deidentify_key: str | bytes | None = None,
):
    """``regions`` as a highdicom ``MicroscopyBulkSimpleAnnotations`` on ``source``'s total pixel matrix.

    Parameters
    ----------
    source : the slide's level-0 instance metadata (pydicom Dataset), as for ``report_sr``.
    regions : ``Annotation`` objects in level-0 pixels (drawn, read from QuPath, ``evidence_annotations``).
        Objects of type 'annotation' form MANUAL groups, others ('detection', 'tile', ...) AUTOMATIC ones.
    heatmap : when given, each region's heatmap value is written as a measurement named ``heatmap.title``:
        the mean over the patches whose centres lie inside a polygon, or under a line's or point's vertices.
    drop_holes : write only the exterior of polygons with holes (refused otherwise; see the module notes).
    deidentify_key : de-identify the result (``io.deidentify``) with this site secret.
    """
    from highdicom import UID
    from highdicom.ann import MicroscopyBulkSimpleAnnotations

    check_source(source)
    if not isinstance(regions, (list, tuple)) or not all(isinstance(a, Annotation) for a in regions):
        raise ValueError("regions must be a list of napari_pathalign.io.Annotation (level-0 pixel geometry)")
    if not regions:
        raise ValueError("no regions to write; draw or load some, or pass evidence_annotations(heatmap)")
    if "TotalPixelMatrixColumns" not in source:
        raise ValueError("source has no total pixel matrix size; pass the slide's level-0 (VOLUME) instance")
    width, height = int(source.TotalPixelMatrixColumns), int(source.TotalPixelMatrixRows)
    check_bounds(regions, width, height, tolerance=0.0)
    groups = defaultdict(list)  # (class, objectType, graphic type) -> [(vertices (N, 2), measurements)]
    for k, region in enumerate(regions):
        measured = _numbers(region.properties.get("measurements"))
        for kind, vertices in _parts(region, k, drop_holes):
            values = dict(measured)
            if heatmap is not None:
                values[heatmap.title] = _heatmap_value(heatmap, kind, vertices)
            key = (region.classification or UNCLASSIFIED, region.object_type or "annotation", GRAPHIC[kind])
            groups[key].append((vertices, values, region.color))
    ann_groups = [_group(n + 1, key, items) for n, (key, items) in enumerate(groups.items())]
    ann = MicroscopyBulkSimpleAnnotations(
        source_images=[source],
        annotation_coordinate_type="2D",
        annotation_groups=ann_groups,
        series_instance_uid=series_uid or UID(),
        series_number=SERIES_NUMBER_ANNOTATIONS,
        sop_instance_uid=UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="pathalign",
        software_versions="0.1",
        device_serial_number="0",
        content_description="PathAlign regions and evidence",
        content_label="PATHALIGN_ANN",
        specific_character_set="ISO_IR 192",  # UTF-8: class and measurement names are the user's ("Area µm^2")
    )
    ann.SeriesDescription = "PathAlign regions"
    return finish(ann, deidentify_key)


def read_bulk_annotations(dataset_or_path) -> BulkAnnotations:
    """Read a bulk annotations instance (a file or a pydicom Dataset) back into ``Annotation`` objects."""
    import pydicom
    from highdicom.ann import MicroscopyBulkSimpleAnnotations

    ds = dataset_or_path if isinstance(dataset_or_path, pydicom.Dataset) else pydicom.dcmread(dataset_or_path)
    if getattr(ds, "Modality", None) != "ANN" or getattr(ds, "AnnotationCoordinateType", None) != "2D":
        raise ValueError(
            f"not 2D microscopy bulk annotations (modality {getattr(ds, 'Modality', None)!r}, coordinates "
            f"{getattr(ds, 'AnnotationCoordinateType', None)!r}); expected modality ANN with 2D coordinates"
        )
    if getattr(ds, "PixelOriginInterpretation", "VOLUME") != "VOLUME":
        raise ValueError("the coordinates are per frame (Pixel Origin Interpretation FRAME); only VOLUME is read")
    ann = MicroscopyBulkSimpleAnnotations.from_dataset(ds)
    out = []
    for group in ann.get_annotation_groups():
        names, values, _ = group.get_measurements()  # values (n_annotations, n_measurements) float32
        kind = group.graphic_type.value
        if kind == "ELLIPSE":
            raise ValueError(f"group {group.label!r} holds ellipses; only points, lines and polygons are read")
        object_type = str(group.get("AnnotationGroupDescription", ""))  # ours: the QuPath objectType
        if not re.fullmatch(r"[a-z]+", object_type):  # another writer's description
            object_type = "annotation" if group.algorithm_type.value == "MANUAL" else "detection"
        color = group.get("RecommendedDisplayCIELabValue")
        if color is not None:
            from highdicom.color import CIELabColor

            color = tuple(int(c) for c in CIELabColor.from_dicom_value(color).to_rgb())
        for i, vertices in enumerate(group.get_graphic_data(coordinate_type="2D")):
            xy = np.asarray(vertices, np.float64).tolist()  # float32 values are exact in float64
            if kind == "POINT":
                geometry = {"type": "Point", "coordinates": xy[0]}
            elif kind == "POLYLINE":
                geometry = {"type": "LineString", "coordinates": xy}
            else:  # POLYGON, or another writer's RECTANGLE (its four corners)
                geometry = {"type": "Polygon", "coordinates": [xy + [xy[0]]]}  # GeoJSON rings close
            measurements = {n.meaning: float(v) for n, v in zip(names, values[i]) if np.isfinite(v)}
            out.append(
                Annotation(
                    geometry,
                    classification=None if group.label == UNCLASSIFIED else group.label,
                    color=color,
                    object_type=object_type,
                    properties={"measurements": measurements} if measurements else {},
                )
            )
    series = [s.SeriesInstanceUID for s in ds.get("ReferencedSeriesSequence", [])]
    instance = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID if "ReferencedImageSequence" in ds else ""
    return BulkAnnotations(out, str(ds.StudyInstanceUID), series, str(instance))


def _parts(region: Annotation, k: int, drop_holes: bool) -> list[tuple[str, np.ndarray]]:
    """The region's parts as (GeoJSON single type, (N, 2) float64 vertices) DICOM ANN can hold."""
    kind, coords = region.geometry.get("type"), region.geometry.get("coordinates")
    where = f"region {k} ({region.label()!r})"
    if kind == "Point":
        parts = [("Point", [coords])]
    elif kind == "MultiPoint":
        parts = [("Point", [p]) for p in coords]
    elif kind == "LineString":
        parts = [("LineString", coords)]
    elif kind == "MultiLineString":
        parts = [("LineString", line) for line in coords]
    elif kind in ("Polygon", "MultiPolygon"):
        polygons = [coords] if kind == "Polygon" else coords
        if any(len(rings) > 1 for rings in polygons) and not drop_holes:
            raise ValueError(
                f"{where} is a polygon with holes; DICOM bulk annotations have no holes. Pass drop_holes=True "
                "to write its exterior (the holes' area then counts as inside), or split it in QuPath"
            )
        parts = [("Polygon", rings[0]) for rings in polygons]
    else:
        raise ValueError(f"{where} has geometry {kind!r}; expected Point, LineString, Polygon or their Multi- forms")
    out = []
    for part_kind, vertices in parts:
        xy = np.asarray(vertices, np.float64).reshape(-1, 2)  # (N, 2) level-0 x, y
        if part_kind == "Polygon":
            if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):
                xy = xy[:-1]  # GeoJSON closes rings; a DICOM POLYGON must not repeat its first vertex
            if len(xy) < 3:
                raise ValueError(f"{where}: a polygon ring needs at least 3 distinct vertices, got {len(xy)}")
        if part_kind == "LineString" and len(xy) < 2:
            raise ValueError(f"{where}: a line needs at least 2 vertices, got {len(xy)}")
        if not np.isfinite(xy).all():
            raise ValueError(f"{where} has a vertex that is not a finite number")
        out.append((part_kind, xy))
    return out


def _group(number: int, key: tuple, items: list):
    from highdicom import UID, AlgorithmIdentificationSequence
    from highdicom.ann import AnnotationGroup, Measurements
    from highdicom.color import CIELabColor
    from pydicom.sr.codedict import codes

    label, object_type, graphic = key
    if len(label) > 64 or "\\" in label:
        raise ValueError(f"class name {label!r} cannot be a DICOM group label: at most 64 characters, no backslash")
    category, kind = _property_codes(label)
    vertices = [xy for xy, _, _ in items]
    # float32 where that is exact (integer pixels always are), else float64: never a rounded coordinate
    exact32 = all(np.array_equal(xy.astype(np.float32).astype(np.float64), xy) for xy in vertices)
    vertices = [xy.astype(np.float32 if exact32 else np.float64) for xy in vertices]
    names = sorted({name for _, measured, _ in items for name in measured})
    table = {name: np.array([m.get(name, np.nan) for _, m, _ in items], np.float32) for name in names}
    measurements = [  # a measurement no annotation of the group has is left out: an empty value list reads badly
        Measurements(name=_local_code("m", name), values=values, unit=codes.UCUM.NoUnits)
        for name, values in table.items()
        if np.isfinite(values).any()
    ]
    manual = object_type == "annotation"
    color = next((c for _, _, c in items if c is not None), None)
    return AnnotationGroup(
        number=number,
        uid=UID(),
        label=label,
        annotated_property_category=category,
        annotated_property_type=kind,
        graphic_type=graphic,
        graphic_data=vertices,
        algorithm_type="MANUAL" if manual else "AUTOMATIC",
        algorithm_identification=None
        if manual
        else AlgorithmIdentificationSequence(
            name=MANUFACTURER, family=codes.cid7162.ArtificialIntelligence, version="0.1"
        ),
        measurements=measurements or None,
        description=object_type[:64],
        display_color=None if color is None else CIELabColor.from_rgb(*(int(c) for c in color)),
    )


# class names with a SNOMED CT concept: (category, type); anything else gets a local code
SCT_CLASSES = {
    "tumor": ("MorphologicallyAbnormalStructure", "Neoplasm"),
    "tumour": ("MorphologicallyAbnormalStructure", "Neoplasm"),
    "neoplasm": ("MorphologicallyAbnormalStructure", "Neoplasm"),
    "carcinoma": ("MorphologicallyAbnormalStructure", "Carcinoma"),
    "necrosis": ("MorphologicallyAbnormalStructure", "Necrosis"),
    "inflammation": ("MorphologicallyAbnormalStructure", "Inflammation"),
    "tissue": ("AnatomicalStructure", "Tissue"),
    "fat": ("AnatomicalStructure", "AdiposeTissue"),
    "muscle": ("AnatomicalStructure", "Muscle"),
    "blood vessel": ("AnatomicalStructure", "BloodVessel"),
    "cell": ("AnatomicalStructure", "Cell"),
}


def _property_codes(label: str):
    from pydicom.sr.codedict import codes

    base = label.split(":")[0].strip().lower()  # "Tumor: Positive" is a tumour
    if base in SCT_CLASSES:
        category, kind = SCT_CLASSES[base]
        return getattr(codes.SCT, category), getattr(codes.SCT, kind)
    if base == EVIDENCE_CLASS.lower():
        return _local_code("c", "Region", exact="region"), _local_code("t", "Evidence patch", exact="evidence")
    return _local_code("c", "Region", exact="region"), _local_code("t", label)


def _local_code(prefix: str, meaning: str, exact: str | None = None):
    """A ``99PATHALIGN`` code; its value (at most 16 characters) is a hash of the meaning, which carries the name.
    A meaning over DICOM's 64 characters (a heatmap's long title) is cut to 61 and '...'; the value still
    hashes the whole name, so two long names that start alike stay two codes."""
    from pydicom.sr.coding import Code

    value = exact or prefix + hashlib.sha256(meaning.encode()).hexdigest()[:15]
    return Code(value, SCHEME, meaning if len(meaning) <= 64 else meaning[:61] + "...")


def _numbers(measurements) -> dict:
    """The finite numeric entries of a QuPath measurements dict (others cannot be DICOM measurements)."""
    out = {}
    for name, value in dict(measurements or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            out[str(name)] = float(value)
    return out


def _heatmap_value(heatmap: Heatmap, kind: str, xy: np.ndarray) -> float:
    """Mean heatmap value over a polygon's patches (centres inside) or a line's or point's vertices' patches."""
    values = heatmap.values  # (P,) float32
    if kind == "Polygon":
        centres = heatmap.xy_level0 + heatmap.size_level0 / 2.0  # (P, 2) level-0 x, y
        inside = _inside(centres, xy)  # (P,) bool
        if inside.any():
            chosen = values[inside]
            return float(np.nanmean(chosen)) if np.isfinite(chosen).any() else float("nan")
    hits = [patch_at(heatmap.xy_level0, heatmap.size_level0, p) for p in xy]
    chosen = np.array([values[i] for i in hits if i is not None], np.float32)
    return float(np.nanmean(chosen)) if np.isfinite(chosen).any() else float("nan")


def _inside(points: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Even-odd test of (P, 2) points against a ring of (N, 2) vertices (not repeated at the end)."""
    x, y = points[:, 0][:, None], points[:, 1][:, None]  # (P, 1)
    x0, y0 = ring[:, 0][None], ring[:, 1][None]  # (1, N)
    x1, y1 = np.roll(ring[:, 0], -1)[None], np.roll(ring[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)  # (P, N): the edge spans the point's row
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (crosses & (x < x_cross)).sum(axis=1) % 2 == 1
