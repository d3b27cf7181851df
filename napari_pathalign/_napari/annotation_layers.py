"""Annotations <-> napari layers: polygons and lines as Shapes, points as Points, on the slide's µm scale.

A slide layer shows level-0 pixel i centred on data coordinate i (it spans i - 0.5 .. i + 0.5), while
QuPath's coordinate i is the pixel's top-left corner: layer data = (y - 0.5, x - 0.5), with the slide
layer's scale and translate, so an annotation sits on the pixels it was drawn on. napari's Shapes have
no holes: a polygon's holes are shapes of their own (``part`` 'hole', same ``id``), and a polygon with
holes is drawn as outlines only, so the hole is not painted over. Export puts them back together.

Detections and cells come by the ten thousand and are drawn as closed outlines (napari "path" shapes):
filling a polygon means triangulating it, and napari's pure-Python triangulation of a non-convex cell
takes ~6 ms (20,000 cells: 90 s); an outline is ~0.2 ms. Installing napari's compiled backend
(``pip install bermuda``) makes filled polygons fast too. Beyond ``MAX_OUTLINES`` detections even
outlines are too many for napari to add without freezing the window (100,000: 4.4 s), and as many points
still cost 0.2 s to add and 0.2 s to paint the first time in software OpenGL. They are drawn as QuPath
draws detections: into an image pyramid whose tiles are rendered when napari shows them
(``tiling/detection_raster.py``): outlines when zoomed in, class-coloured dots when zoomed out. The layer
keeps the detections, and export writes them as they came.
"""

from __future__ import annotations

import uuid
from collections import defaultdict

import numpy as np

from napari_pathalign.core.polygons import ellipse_ring, point_in_ring
from napari_pathalign.io import Annotation
from napari_pathalign.io.annotations import vertex_table
from napari_pathalign.tiling.detection_raster import DetectionRaster

FEATURES = ("class", "name", "object_type", "id", "part")  # the Shapes layer's feature columns
UNCLASSIFIED_RGB = (255, 200, 0)  # QuPath draws unclassified objects yellow-orange too
REGION_TYPES = ("annotation", "tma_core")  # drawn filled; detections, cells and tiles as outlines
MAX_OUTLINES = 20_000  # more detection polygons than this are drawn as an image pyramid (see above)
FACE_ALPHA = 0.25  # regions are tinted with their class colour, the slide stays readable under them


def class_rgb(ann: Annotation) -> tuple[int, int, int]:
    own = ann.properties.get("color")
    if ann.color is not None:
        return ann.color
    if isinstance(own, list) and len(own) == 3:
        return tuple(int(c) for c in own)
    return UNCLASSIFIED_RGB


def _exterior(geometry: dict) -> list:
    """A Polygon's exterior ring, a MultiPolygon's first one, as the one vertex list of ``vertex_table``."""
    coords = geometry["coordinates"]
    return [coords[0] if geometry["type"] == "Polygon" else coords[0][0]]


def annotation_layers(annotations: list[Annotation], slide_layer, name: str) -> list:
    """New (not yet added) layers: Shapes for regions and lines, one per object type, and Points for points.

    Safe to call in a worker thread: it builds layer models (and their triangulation), no Qt.
    """
    import napari

    h0, w0 = slide_layer.metadata["shape_level0"]
    place = {"scale": tuple(slide_layer.scale[-2:]), "translate": tuple(slide_layer.translate[-2:])}
    place["units"] = tuple(slide_layer.units[-2:])
    edge_width = max(h0, w0) / 400  # level-0 pixels: visible on the whole slide, still thin when zoomed in
    shapes, points = defaultdict(lambda: defaultdict(list)), defaultdict(list)
    properties = {}
    detection = [_is_detection_region(a) for a in annotations]
    out = []
    if sum(detection) > MAX_OUTLINES:
        many = [a for a, d in zip(annotations, detection) if d]
        annotations = [a for a, d in zip(annotations, detection) if not d]
        out.append(detection_layer(many, slide_layer, name, place))
    colours: dict = {}  # class RGB -> the 0-1 array napari takes, made once per colour
    for ann in annotations:
        ident = ann.id or str(uuid.uuid4())
        properties[ident] = ann.properties
        key = class_rgb(ann)
        rgb = colours.get(key)
        if rgb is None:
            rgb = colours[key] = np.array(key) / 255
        row = {"class": ann.classification or "", "name": ann.name or "", "object_type": ann.object_type, "id": ident}
        kind, coords = ann.geometry["type"], ann.geometry["coordinates"]
        if kind in ("Point", "MultiPoint"):
            for x, y in [coords] if kind == "Point" else coords:
                points["data"].append((y - 0.5, x - 0.5))
                points["color"].append(rgb)
                points["rows"].append(row)
            continue
        if kind in ("LineString", "MultiLineString"):
            parts = [("line", "path", line) for line in ([coords] if kind == "LineString" else coords)]
        else:
            polygons = [coords] if kind == "Polygon" else coords
            parts = [
                ("exterior" if k == 0 else "hole", "polygon", ring) for poly in polygons for k, ring in enumerate(poly)
            ]
        holed = any(part == "hole" for part, _, _ in parts)
        outline_only = ann.object_type not in REGION_TYPES
        layer = shapes[ann.object_type]
        for part, shape_type, xy in parts:
            xy = np.asarray(xy, float)
            if shape_type == "polygon" and outline_only:
                shape_type = "path"
                xy = xy if (xy[0] == xy[-1]).all() else np.vstack([xy, xy[:1]])  # closed: it ends where it began
            elif shape_type == "polygon" and len(xy) > 3 and (xy[0] == xy[-1]).all():
                xy = xy[:-1]  # napari closes polygons itself
            layer["data"].append(xy[:, ::-1] - 0.5)  # (V, 2) row, col
            layer["shape_type"].append(shape_type)
            layer["edge"].append(np.append(rgb, 1.0))
            filled = shape_type == "polygon" and not holed
            layer["face"].append(np.append(rgb, FACE_ALPHA if filled else 0.0))
            layer["rows"].append({**row, "part": part})
    for object_type, layer in shapes.items():
        features = {key: [r[key] for r in layer["rows"]] for key in FEATURES}
        new = napari.layers.Shapes(
            layer["data"],
            shape_type=layer["shape_type"],
            edge_color=np.array(layer["edge"]),
            face_color=np.array(layer["face"]),
            edge_width=edge_width,
            features=features,
            name=f"{name} [{object_type}s]",
            metadata={"annotation_properties": properties, "source": name},
            **place,
        )
        new.feature_defaults = {"class": "", "name": "", "object_type": "annotation", "id": "", "part": "exterior"}
        out.append(new)
    if points:
        features = {key: [r[key] for r in points["rows"]] for key in FEATURES[:4]}
        new = napari.layers.Points(
            np.array(points["data"]),
            face_color=np.array(points["color"]),
            border_color="white",
            border_width=0.2,
            size=max(h0, w0) / 100,
            features=features,
            name=f"{name} [points]",
            metadata={"annotation_properties": properties, "source": name},
            **place,
        )
        new.feature_defaults = {"class": "", "name": "", "object_type": "annotation", "id": ""}
        out.append(new)
    return out


def detection_layer(detections: list[Annotation], slide_layer, name: str, place: dict):
    """Very many detection polygons as one RGBA image pyramid drawn tile by tile (their exterior rings, in their
    class colours), on the slide's own pixel grid; ``metadata['detections']`` keeps them for export."""
    import napari

    h0, w0 = slide_layer.metadata["shape_level0"]
    xy, starts = vertex_table(detections, parts=_exterior)
    colours: dict = {}
    rgba = np.array([colours.setdefault(rgb, (*rgb, 255)) for rgb in map(class_rgb, detections)], np.uint8)
    raster = DetectionRaster(xy, starts, rgba, int(h0), int(w0))
    return napari.layers.Image(
        raster.pyramid(),
        rgb=True,
        multiscale=True,
        blending="translucent",
        name=f"{name} [detections]",
        metadata={"detections": detections, "source": name},
        **place,
    )


def _is_detection_region(ann: Annotation) -> bool:
    return ann.object_type not in REGION_TYPES and ann.geometry["type"] in ("Polygon", "MultiPolygon")


def level0_xy(layer, slide_layer, data: np.ndarray) -> np.ndarray:
    """Layer data (V, >=2) -> level-0 (x, y) of the slide, through world coordinates (scale and translate)."""
    world = np.asarray(data, float)[:, -2:] * layer.scale[-2:] + layer.translate[-2:]  # (V, 2) row, col
    rc = (world - slide_layer.translate[-2:]) / slide_layer.scale[-2:]
    return rc[:, ::-1] + 0.5


def _column(layer, key: str, n: int) -> list:
    if key in layer.features.columns:
        return [("" if v is None or (isinstance(v, float) and np.isnan(v)) else v) for v in layer.features[key]]
    return [""] * n


def annotations_of_layer(layer, slide_layer) -> list[Annotation]:
    """A Shapes or Points layer (imported or drawn), or an imported detections image -> annotations in the
    slide's level-0 pixels.

    Rectangles and polygons become Polygons (with the holes that share their ``id``; MultiPolygons when
    several regions share one), ellipses 64-gons, lines and paths LineStrings, points Points (MultiPoints
    when they share an ``id``). The class is the ``class`` feature, the colour the shape's edge colour.
    """
    import napari

    if "detections" in layer.metadata:  # very many detections drawn as an image: they go out as they came
        return list(layer.metadata["detections"])
    kept = layer.metadata.get("annotation_properties", {})
    if isinstance(layer, napari.layers.Points):
        return _point_annotations(layer, slide_layer, kept)
    n = len(layer.data)
    cols = {key: _column(layer, key, n) for key in FEATURES}
    edges = np.asarray(layer.edge_color)[:, :3] if n else np.zeros((0, 3))
    out, by_id = [], {}
    for i, kind, rings in shape_parts(layer, slide_layer):
        if kind == "line":
            out.append((i, {"type": "LineString", "coordinates": rings[0].tolist()}))
        else:  # one id's regions (a MultiPolygon's parts) are one annotation; drawn shapes have no id
            by_id.setdefault(cols["id"][i] or f"new-{i}", []).append((i, rings))
    for parts in by_id.values():
        polygons = [[r.tolist() for r in rings] for _, rings in parts]
        geometry = {"type": "Polygon", "coordinates": polygons[0]}
        if len(polygons) > 1:
            geometry = {"type": "MultiPolygon", "coordinates": polygons}
        out.append((parts[0][0], geometry))
    result = []
    for i, geometry in sorted(out, key=lambda item: item[0]):
        ident = cols["id"][i] or None
        cls = cols["class"][i] or None
        result.append(
            Annotation(
                geometry=geometry,
                classification=cls,
                color=tuple(int(round(c * 255)) for c in edges[i]) if cls else None,
                name=cols["name"][i] or None,
                object_type=cols["object_type"][i] or "annotation",
                properties=dict(kept.get(ident, {})),
                id=ident,
            )
        )
    return result


def shape_parts(layer, slide_layer) -> list[tuple[int, str, list]]:
    """The shapes of a Shapes layer as (index, 'line' or 'region', rings) in level-0 (x, y), by index.

    A line's rings are its one vertex array; a region's are [exterior, holes...]: each hole (``part``
    'hole') goes back into the exterior of the same ``id`` that holds it, and is no entry of its own.
    """
    n = len(layer.data)
    parts, ids = _column(layer, "part", n), _column(layer, "id", n)
    lines, exteriors, holes = [], [], []
    for i, (data, shape_type) in enumerate(zip(layer.data, layer.shape_type)):
        xy = level0_xy(layer, slide_layer, data)
        if shape_type == "ellipse":
            xy = ellipse_ring(xy)
        ring_part = parts[i] in ("exterior", "hole")
        if shape_type == "path" and ring_part and len(xy) > 3 and np.allclose(xy[0], xy[-1]):
            xy, shape_type = xy[:-1], "polygon"  # an imported cell's closed outline: a ring again
        if shape_type in ("line", "path"):
            lines.append((i, "line", [xy]))
        elif parts[i] == "hole":
            holes.append((i, xy))
        else:
            exteriors.append((i, "region", [xy]))
    for i, xy in holes:
        for j, _, rings in exteriors:
            if ids[j] == ids[i] and point_in_ring(xy[0], rings[0]):
                rings.append(xy)
                break
        else:
            exteriors.append((i, "region", [xy]))  # its exterior was deleted: the hole is a region of its own
    return sorted(lines + exteriors, key=lambda item: item[0])


def _point_annotations(layer, slide_layer, kept: dict) -> list[Annotation]:
    n = len(layer.data)
    cols = {key: _column(layer, key, n) for key in FEATURES[:4]}
    xy = level0_xy(layer, slide_layer, layer.data) if n else np.zeros((0, 2))
    faces = np.asarray(layer.face_color)[:, :3] if n else np.zeros((0, 3))
    groups: dict = {}
    for i in range(n):
        key = cols["id"][i] or f"point-{i}"
        groups.setdefault(key, []).append(i)
    out = []
    for key, rows in groups.items():
        first = rows[0]
        cls = cols["class"][first] or None
        geometry = (
            {"type": "Point", "coordinates": xy[first].tolist()}
            if len(rows) == 1
            else {"type": "MultiPoint", "coordinates": xy[rows].tolist()}
        )
        ident = cols["id"][first] or None
        out.append(
            Annotation(
                geometry=geometry,
                classification=cls,
                color=tuple(int(round(c * 255)) for c in faces[first]) if cls else None,
                name=cols["name"][first] or None,
                object_type=cols["object_type"][first] or "annotation",
                properties=dict(kept.get(ident, {})),
                id=ident,
            )
        )
    return out
