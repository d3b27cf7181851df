"""QuPath's GeoJSON: what its "Export objects as GeoJSON" writes (0.2 to 0.5), read and written.

Read: a FeatureCollection, a single Feature, or the plain JSON list of features older QuPath wrote;
geometry Point, MultiPoint, LineString, MultiLineString, Polygon (holes included), MultiPolygon and a
GeometryCollection (one annotation per member); ``properties.classification`` as {name, color [r, g, b]},
the 0.2 form {name, colorRGB (a packed Java int)}, or {names: [...]} for derived classes; ``objectType``
(or the 0.2 id "PathAnnotationObject"); ``isLocked``; ``measurements`` as a dict or 0.2's list of
{name, value}. Written: a FeatureCollection QuPath 0.4+ opens, one Feature per annotation.
"""

from __future__ import annotations

import functools
import json
import math
import re
import uuid
from collections.abc import Iterator

import numpy as np

from napari_pathalign.core.gc_pause import cycle_collector_paused
from napari_pathalign.io.annotations import CHUNK, GEOMETRY_TYPES, Annotation, geometry_parts, vertex_table

# QuPath 0.2 named the object's class in the feature id instead of a UUID
_OLD_ID_TYPES = {
    "PathAnnotationObject": "annotation",
    "PathDetectionObject": "detection",
    "PathCellObject": "cell",
    "PathTileObject": "tile",
    "TMACoreObject": "tma_core",
}
_MIN_POSITIONS = {"MultiPoint": 1, "LineString": 2}
_ACCEPTED = "a FeatureCollection, a Feature or a JSON list of features (QuPath's GeoJSON export)"


def parse_geojson(data: bytes, source: str = "annotations") -> list[Annotation]:
    """Annotations from the bytes of a QuPath GeoJSON file; ``source`` names it in errors."""
    with cycle_collector_paused():
        try:
            text = data.decode("utf-8-sig")  # QuPath on Windows may write a byte-order mark
        except UnicodeDecodeError as exc:
            raise ValueError(f"{source}: not UTF-8 text ({exc.reason}); expected GeoJSON: {_ACCEPTED}") from None
        out: list[Annotation] = []
        feature_of: list[int] = []  # the feature each annotation came from (a feature may give several)
        try:
            for k, feature in enumerate(_iter_features(text, source)):
                found = _annotations_of(feature, f"{source}: feature {k}")
                out.extend(found)
                feature_of += [k] * len(found)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not JSON ({exc.msg} at line {exc.lineno}); expected {_ACCEPTED}") from None
        _check_numbers(out, feature_of, source)
        return out


def _check_numbers(annotations: list[Annotation], feature_of: list[int], source: str) -> None:
    """Every position holds finite numbers: checked for all annotations at once, a chunk at a time (one numpy
    conversion instead of one per ring); a chunk that fails is checked ring by ring to name the feature."""
    for k in range(0, len(annotations), CHUNK):
        chunk = annotations[k : k + CHUNK]
        try:
            ok = bool(np.isfinite(vertex_table(chunk)[0]).all())
        except (TypeError, ValueError):
            ok = False
        if ok:
            continue
        for j, ann in enumerate(chunk, start=k):
            kind = ann.geometry["type"]
            for part in geometry_parts(ann.geometry):
                _checked_positions(part, 1, f"{source}: feature {feature_of[j]}, {kind}")


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _iter_features(text: str, source: str) -> Iterator:
    """The features of a FeatureCollection or list one at a time, each one short call into the C decoder.

    ``json.loads`` of a 100 MB export holds the GIL for seconds, and a reader in a worker thread would
    freeze the window all that time; between two features the GUI thread gets its turn.
    """
    i = _SPACE.match(text, 0).end()
    if text.startswith("[", i):
        items = _ArrayItems(text, i)
        yield from items
        _end(text, items.end)
        return
    if not text.startswith("{", i):
        doc, i = _DECODER.raw_decode(text, i)
        _end(text, i)
        yield from _features_of(doc, source)
        return
    doc, has_features, i = {}, False, i + 1
    while True:
        i = _SPACE.match(text, i).end()
        if text.startswith("}", i):
            break
        key, i = _DECODER.raw_decode(text, i)
        i = _SPACE.match(text, i).end()
        if not text.startswith(":", i):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
        i = _SPACE.match(text, i + 1).end()
        if key == "features" and text.startswith("[", i):
            has_features = True
            array = _ArrayItems(text, i)
            yield from array
            i = array.end
        else:
            doc[key], i = _DECODER.raw_decode(text, i)
        i = _SPACE.match(text, i).end()
        if text.startswith(",", i):
            i += 1
        elif not text.startswith("}", i):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
    _end(text, i + 1)
    if has_features and doc.get("type") not in (None, "FeatureCollection"):
        raise ValueError(f"{source}: GeoJSON of type {doc.get('type')!r} with features; expected {_ACCEPTED}")
    if not has_features:
        yield from _features_of(doc, source)


class _ArrayItems:
    """Iterate the elements of the JSON array starting at ``text[start]``; ``end`` is the index after it."""

    def __init__(self, text: str, start: int):
        self.text, self.end = text, start + 1

    def __iter__(self):
        text, i = self.text, _SPACE.match(self.text, self.end).end()
        if text.startswith("]", i):
            self.end = i + 1
            return
        while True:
            item, i = _DECODER.raw_decode(text, i)
            yield item
            i = _SPACE.match(text, i).end()
            if text.startswith("]", i):
                self.end = i + 1
                return
            if not text.startswith(",", i):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            i = _SPACE.match(text, i + 1).end()


def _end(text: str, i: int) -> None:
    if _SPACE.match(text, i).end() != len(text):
        raise json.JSONDecodeError("Extra data", text, i)


def _features_of(doc, source: str) -> list:
    if isinstance(doc, list):
        return doc
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: the JSON is a {type(doc).__name__}; expected {_ACCEPTED}")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise ValueError(f"{source}: a FeatureCollection without a 'features' list; expected {_ACCEPTED}")
        return features
    if kind == "Feature" or kind in GEOMETRY_TYPES or kind == "GeometryCollection":
        return [doc]
    raise ValueError(f"{source}: GeoJSON of type {kind!r}; expected {_ACCEPTED}")


def _annotations_of(feature, where: str) -> list[Annotation]:
    if not isinstance(feature, dict):
        raise ValueError(f"{where}: a {type(feature).__name__}, not a GeoJSON Feature object")
    if feature.get("type") != "Feature":  # a bare geometry: no class, no name
        feature = {"type": "Feature", "geometry": feature, "properties": {}}
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError(f"{where}: 'properties' is a {type(props).__name__}; expected an object")
    props = dict(props)
    name = props.pop("name", None)
    if name is not None:
        where = f"{where} ({name!r})"
    classification, color = _classification(props.pop("classification", None), where)
    fid = feature.get("id")
    object_type = props.pop("objectType", None) or props.pop("object_type", None) or _OLD_ID_TYPES.get(fid)
    if "measurements" in props:
        props["measurements"] = _measurements(props["measurements"], where)
    if "nucleusGeometry" in feature:  # QuPath cells; kept so that writing gives it back
        props["nucleusGeometry"] = feature["nucleusGeometry"]
    ident = str(fid) if fid is not None and fid not in _OLD_ID_TYPES else None
    geometries = _geometries(feature.get("geometry"), where)
    return [
        Annotation(
            geometry=geometry,
            classification=classification,
            color=color,
            name=None if name is None else str(name),
            object_type=str(object_type or "annotation").lower(),
            properties=props if i == 0 else dict(props),
            id=ident if i == 0 else None,
        )
        for i, geometry in enumerate(geometries)
    ]


def _geometries(geometry, where: str) -> list[dict]:
    if not isinstance(geometry, dict):
        raise ValueError(f"{where}: has no geometry object (got {type(geometry).__name__}); QuPath writes one")
    kind = geometry.get("type")
    if kind == "GeometryCollection":
        members = geometry.get("geometries")
        if not isinstance(members, list):
            raise ValueError(f"{where}: a GeometryCollection without a 'geometries' list")
        return [g for m in members for g in _geometries(m, where)]
    if kind not in GEOMETRY_TYPES:
        raise ValueError(
            f"{where}: unknown geometry type {kind!r}; expected one of {', '.join(GEOMETRY_TYPES)} "
            "or GeometryCollection"
        )
    coords = geometry.get("coordinates")
    if coords is None:
        raise ValueError(f"{where}: a {kind} without 'coordinates'")
    return [{"type": kind, "coordinates": _coordinates(kind, coords, f"{where}, {kind}")}]


def _coordinates(kind: str, coords, where: str) -> list:
    if kind == "Point":
        return _positions([coords], 1, where)[0]
    if kind in _MIN_POSITIONS:
        return _positions(coords, _MIN_POSITIONS[kind], where)
    if not isinstance(coords, list) or not coords:
        raise ValueError(f"{where}: coordinates must be a non-empty list, got {_short(coords)}")
    if kind == "MultiLineString":
        return [_positions(line, 2, where) for line in coords]
    if kind == "Polygon":
        return [_positions(ring, 3, where) for ring in coords]
    return [_coordinates("Polygon", polygon, where) for polygon in coords]  # MultiPolygon


def _positions(seq, min_count: int, where: str) -> list:
    """A list of at least ``min_count`` [x, y] positions. The common case (lists of two) is only checked for its
    shape here; that they are finite numbers is checked for the whole file at once (``_check_numbers``)."""
    if isinstance(seq, list) and len(seq) >= min_count and all(type(p) is list and len(p) == 2 for p in seq):
        return seq
    return _checked_positions(seq, min_count, where)


def _checked_positions(seq, min_count: int, where: str) -> list:
    """A list of [x, y] positions, checked: numbers, finite, at least ``min_count`` of them."""
    try:
        xy = np.asarray(seq, dtype=float)  # (N, 2), or (N, 3) with a z QuPath never writes
    except (TypeError, ValueError):
        raise ValueError(f"{where}: coordinates {_short(seq)} are not a list of [x, y] numbers") from None
    if xy.ndim != 2 or xy.shape[1] not in (2, 3) or len(xy) < min_count:
        raise ValueError(f"{where}: coordinates {_short(seq)} are not a list of at least {min_count} [x, y] positions")
    if not np.isfinite(xy).all():
        raise ValueError(f"{where}: coordinates hold NaN or infinity; every position must be a finite [x, y]")
    return seq if xy.shape[1] == 2 else xy[:, :2].tolist()  # the parsed lists, not a copy: 100,000 cells


def _classification(value, where: str) -> tuple[str | None, tuple[int, int, int] | None]:
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: classification is a {type(value).__name__}; expected {{name, color}} or a name")
    name = value.get("name")
    if name is None and isinstance(value.get("names"), list):
        name = ": ".join(str(n) for n in value["names"])
    if "color" in value:
        color = _rgb(value["color"], where)
    elif "colorRGB" in value:  # QuPath 0.2: a packed (A)RGB Java int, often negative
        packed = int(value["colorRGB"]) & 0xFFFFFF
        color = (packed >> 16 & 255, packed >> 8 & 255, packed & 255)
    else:
        color = None
    return (None if name is None else str(name)), color


def _rgb(value, where: str) -> tuple[int, int, int]:
    rgb = _rgb_of(tuple(value)) if isinstance(value, (list, tuple)) else None
    if rgb is None:
        raise ValueError(f"{where}: classification colour {value!r} is not [r, g, b] with each 0-255")
    return rgb


@functools.lru_cache(maxsize=256)  # 100,000 cells share a handful of class colours
def _rgb_of(value: tuple) -> tuple[int, int, int] | None:
    ok = len(value) == 3 and all(type(c) in (int, float) and 0 <= c <= 255 for c in value)
    return tuple(int(c) for c in value) if ok else None


def _measurements(value, where: str) -> dict:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):  # QuPath 0.2: [{"name": ..., "value": ...}, ...]
        try:
            return {str(m["name"]): m["value"] for m in value}
        except (TypeError, KeyError):
            pass
    raise ValueError(f"{where}: measurements {_short(value)} are neither {{name: value}} nor [{{name, value}}, ...]")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- writing
def to_geojson_text(annotations: list[Annotation]) -> str:
    """A FeatureCollection QuPath opens (File > Import objects, or drag and drop)."""
    with cycle_collector_paused(freeze=False):  # the features are temporaries: freed with the text
        features = [feature_of(ann) for ann in annotations]
        return json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, allow_nan=False)


def feature_of(ann: Annotation) -> dict:
    """One QuPath Feature: id (a UUID), geometry with closed rings, properties as QuPath 0.4+ writes them."""
    rest = dict(ann.properties)
    nucleus = rest.pop("nucleusGeometry", None)
    props: dict = {"objectType": ann.object_type or "annotation"}
    if ann.classification is not None:
        props["classification"] = {"name": ann.classification}
        if ann.color is not None:
            props["classification"]["color"] = [int(c) for c in ann.color]
    if ann.name is not None:
        props["name"] = ann.name
    props["isLocked"] = bool(rest.pop("isLocked", False))
    props["measurements"] = {str(k): _json_number(v) for k, v in dict(rest.pop("measurements", None) or {}).items()}
    props.update(rest)
    feature = {"type": "Feature", "id": _uuid_or_new(ann.id), "geometry": _closed(ann.geometry), "properties": props}
    if nucleus is not None:
        feature["nucleusGeometry"] = nucleus
    return feature


def _closed(geometry: dict) -> dict:
    """GeoJSON (and QuPath) want polygon rings closed: the last position repeats the first."""
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Polygon":
        coords = [_close(ring) for ring in coords]
    elif kind == "MultiPolygon":
        coords = [[_close(ring) for ring in polygon] for polygon in coords]
    return {"type": kind, "coordinates": coords}


def _close(ring: list) -> list:
    return ring if list(ring[0]) == list(ring[-1]) else list(ring) + [ring[0]]


def _json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _uuid_or_new(ident) -> str:
    try:
        return str(uuid.UUID(str(ident)))
    except ValueError:
        return str(uuid.uuid4())
