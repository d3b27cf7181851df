"""Annotations drawn on a slide (QuPath GeoJSON, ASAP XML): one ``Annotation`` type, read and written here.

Coordinates are level-0 pixels of the slide, (x, y), with (0, 0) the top-left corner of the first
pixel (QuPath's and ASAP's convention). The file format is chosen from the suffix; each format lives
in its own module (``qupath_geojson.py``, ``asap_xml.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GEOJSON_SUFFIXES = (".geojson", ".json")
ASAP_SUFFIXES = (".xml",)
ANNOTATION_SUFFIXES = GEOJSON_SUFFIXES + ASAP_SUFFIXES
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")


@dataclass
class Annotation:
    """One object drawn on a slide: a region, a line, a point set; a QuPath annotation or detection."""

    geometry: dict  # GeoJSON-like {"type": ..., "coordinates": ...}, positions [x, y] in level-0 pixels
    classification: str | None = None  # the class name ("Tumor"; derived classes as "Tumor: Positive")
    color: tuple[int, int, int] | None = None  # the class's RGB colour, 0-255, when the file gives one
    name: str | None = None  # the object's own name, if any
    object_type: str = "annotation"  # QuPath's objectType: 'annotation', 'detection', 'cell', 'tile', ...
    properties: dict = field(default_factory=dict)  # the rest: measurements (a dict), isLocked, colour, ...
    id: str | None = None  # the feature's id (QuPath: a UUID)

    def positions(self) -> np.ndarray:
        """Every vertex of the geometry as one (N, 2) float array of level-0 (x, y)."""
        return np.concatenate([np.asarray(p, float).reshape(-1, 2) for p in geometry_parts(self.geometry)])

    def label(self) -> str:
        """A short description for messages: its name, else its class, else its id."""
        return self.name or self.classification or self.id or "unnamed"


def geometry_parts(geometry: dict) -> list:
    """The geometry's vertex lists: each ring of each polygon, each line, each point set (as given)."""
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        return [[coords]]
    if kind in ("MultiPoint", "LineString"):
        return [coords]
    if kind in ("MultiLineString", "Polygon"):
        return list(coords)
    if kind == "MultiPolygon":
        return [ring for polygon in coords for ring in polygon]
    raise ValueError(f"unknown geometry type {kind!r}; expected one of {', '.join(GEOMETRY_TYPES)}")


def read_annotations(path) -> list[Annotation]:
    """Annotations from a QuPath GeoJSON (.geojson, .json) or ASAP (.xml) file, in level-0 pixels."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in GEOJSON_SUFFIXES:
        from napari_pathalign.io.qupath_geojson import parse_geojson

        return parse_geojson(path.read_bytes(), source=path.name)
    if suffix in ASAP_SUFFIXES:
        from napari_pathalign.io.asap_xml import parse_asap_xml

        return parse_asap_xml(path.read_bytes(), source=path.name)
    raise ValueError(
        f"{path.name}: cannot tell the annotation format from the suffix {suffix or '(none)'!r}; "
        f"expected one of {', '.join(ANNOTATION_SUFFIXES)} (QuPath GeoJSON or ASAP XML)"
    )


def write_annotations(annotations, path, overwrite: bool = False) -> Path:
    """Write ``annotations`` as QuPath GeoJSON (.geojson, .json) or ASAP XML (.xml), atomically.

    An existing file is kept unless ``overwrite=True`` (FileExistsError otherwise).
    """
    from napari_pathalign.core.atomic import atomic_write_text

    path = Path(path)
    suffix = path.suffix.lower()
    annotations = list(annotations)
    if suffix in GEOJSON_SUFFIXES:
        from napari_pathalign.io.qupath_geojson import to_geojson_text

        text = to_geojson_text(annotations)
    elif suffix in ASAP_SUFFIXES:
        from napari_pathalign.io.asap_xml import to_asap_xml_text

        text = to_asap_xml_text(annotations)
    else:
        raise ValueError(
            f"{path.name}: cannot tell the annotation format from the suffix {suffix or '(none)'!r}; "
            f"expected one of {', '.join(ANNOTATION_SUFFIXES)} (QuPath GeoJSON or ASAP XML)"
        )
    return atomic_write_text(path, text, overwrite=overwrite)


CHUNK = 5000  # annotations converted to numpy at a time (a worker thread's GIL holds stay short)


def vertex_table(annotations, parts=geometry_parts) -> tuple[np.ndarray, np.ndarray]:
    """Every vertex of every annotation in one (V, 2) float64 array of level-0 (x, y), and (N + 1,) offsets:
    annotation k's vertices are ``xy[starts[k]:starts[k + 1]]``. One conversion for 100,000 cells instead of
    one small array each (0.3 s instead of 1 s). ``parts(geometry)``: the vertex lists taken (all, by default)."""
    from itertools import chain

    blocks, counts = [], []
    for k in range(0, len(annotations), CHUNK):  # a chunk at a time: numpy holds the GIL for ~10 ms, not 300
        flat = []
        for ann in annotations[k : k + CHUNK]:
            n = len(flat)
            for part in parts(ann.geometry):
                flat.extend(part)
            counts.append(len(flat) - n)
        blocks.append(np.fromiter(chain.from_iterable(flat), dtype=np.float64, count=2 * len(flat)).reshape(-1, 2))
    xy = np.concatenate(blocks) if blocks else np.zeros((0, 2))
    return xy, np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


def check_bounds(annotations, width: float, height: float, tolerance: float = 1.0) -> None:
    """Raise ValueError naming the first annotation with a vertex off a ``width`` x ``height`` slide.

    ``tolerance`` (level-0 pixels) allows the rounding of tools that draw up to the slide's edge.
    """
    xy, starts = vertex_table(annotations)
    off = (xy[:, 0] < -tolerance) | (xy[:, 1] < -tolerance) | (xy[:, 0] > width + tolerance)
    off |= xy[:, 1] > height + tolerance
    if not off.any():
        return
    k = int(np.searchsorted(starts, int(np.argmax(off)), side="right") - 1)
    ann = annotations[k]
    (x0, y0), (x1, y1) = xy[starts[k] : starts[k + 1]].min(0), xy[starts[k] : starts[k + 1]].max(0)
    raise ValueError(
        f"annotation {k} ({ann.label()!r}) lies off the slide: x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f} "
        f"level-0 pixels, but the slide is {width:.0f} x {height:.0f}; annotations must be in this slide's "
        "level-0 pixels (was the file drawn on another slide, or exported at a downsample?)"
    )
