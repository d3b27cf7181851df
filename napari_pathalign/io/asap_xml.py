"""ASAP's annotation XML (also what CAMELYON16/17 ship): polygons, dots, point sets, two-point measurements.

ASAP has no holes and no open polylines beyond its two-point "Measurement"; writing such shapes is
refused in words rather than changed silently.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from napari_pathalign.io.annotations import Annotation

_POLYGON_TYPES = ("Polygon", "Spline", "Rectangle")


def parse_asap_xml(data: bytes, source: str = "annotations") -> list[Annotation]:
    """Annotations from the bytes of an ASAP XML file; ``source`` names it in errors."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise ValueError(f"{source}: not XML ({exc}); expected ASAP annotations (<ASAP_Annotations>)") from None
    if root.tag != "ASAP_Annotations":
        raise ValueError(f"{source}: the XML root is <{root.tag}>; expected <ASAP_Annotations> (ASAP's format)")
    group_colors = {g.get("Name"): _hex_rgb(g.get("Color")) for g in root.iter("Group")}
    out = []
    for k, node in enumerate(root.iter("Annotation")):
        name, kind, group = node.get("Name"), node.get("Type"), node.get("PartOfGroup")
        where = f"{source}: annotation {k} ({name!r})"
        coords = sorted(node.iter("Coordinate"), key=lambda c: float(c.get("Order", 0)))
        try:
            xy = [[float(c.get("X").replace(",", ".")), float(c.get("Y").replace(",", "."))] for c in coords]
        except (AttributeError, ValueError):
            raise ValueError(f"{where}: a Coordinate without numeric X and Y") from None
        if kind in _POLYGON_TYPES and len(xy) >= 3:
            geometry = {"type": "Polygon", "coordinates": [xy + [xy[0]] if xy[0] != xy[-1] else xy]}
        elif kind == "Dot" and len(xy) == 1:
            geometry = {"type": "Point", "coordinates": xy[0]}
        elif kind == "PointSet" and xy:
            geometry = {"type": "MultiPoint", "coordinates": xy}
        elif kind == "Measurement" and len(xy) == 2:
            geometry = {"type": "LineString", "coordinates": xy}
        else:
            raise ValueError(
                f"{where}: type {kind!r} with {len(xy)} coordinates; expected Polygon/Spline/Rectangle (3 or more), "
                "Dot (1), PointSet (1 or more) or Measurement (2)"
            )
        classification = group if group not in (None, "", "None") else None
        color = group_colors.get(classification) or _hex_rgb(node.get("Color"))
        out.append(Annotation(geometry, classification, color, name))
    return out


def to_asap_xml_text(annotations: list[Annotation]) -> str:
    """ASAP XML: one group per class (with its colour), one <Annotation> per polygon / line / point set."""
    root = ET.Element("ASAP_Annotations")
    nodes = ET.SubElement(root, "Annotations")
    groups: dict[str, tuple | None] = {}
    for k, ann in enumerate(annotations):
        group = ann.classification or "None"
        if ann.classification and groups.get(group) is None:
            groups[group] = ann.color
        for kind, xy in _asap_parts(ann, k):
            color = "#{:02X}{:02X}{:02X}".format(*ann.color) if ann.color else "#F4FA58"
            node = ET.SubElement(
                nodes, "Annotation", Name=ann.name or f"Annotation {k}", Type=kind, PartOfGroup=group, Color=color
            )
            coords = ET.SubElement(node, "Coordinates")
            for order, (x, y) in enumerate(xy):
                ET.SubElement(coords, "Coordinate", Order=str(order), X=repr(float(x)), Y=repr(float(y)))
    group_nodes = ET.SubElement(root, "AnnotationGroups")
    for name, color in groups.items():
        hex_color = "#{:02X}{:02X}{:02X}".format(*color) if color else "#64FE2E"
        node = ET.SubElement(group_nodes, "Group", Name=name, PartOfGroup="None", Color=hex_color)
        ET.SubElement(node, "Attributes")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _asap_parts(ann: Annotation, k: int) -> list[tuple[str, list]]:
    kind, coords = ann.geometry["type"], ann.geometry["coordinates"]
    polygons = [coords] if kind == "Polygon" else coords if kind == "MultiPolygon" else None
    if polygons is not None:
        if any(len(p) > 1 for p in polygons):
            raise ValueError(
                f"annotation {k} ({ann.label()!r}) is a polygon with holes; ASAP XML has no holes: "
                "export it as GeoJSON (.geojson) instead"
            )
        return [("Polygon", p[0][:-1] if p[0][0] == p[0][-1] else p[0]) for p in polygons]
    if kind == "Point":
        return [("Dot", [coords])]
    if kind == "MultiPoint":
        return [("PointSet", coords)]
    if kind == "LineString" and len(coords) == 2:
        return [("Measurement", coords)]
    raise ValueError(
        f"annotation {k} ({ann.label()!r}) is a {kind} ASAP XML cannot hold (it has polygons, dots, point sets "
        "and two-point measurements); export it as GeoJSON (.geojson) instead"
    )


def _hex_rgb(text) -> tuple[int, int, int] | None:
    if not text or not text.startswith("#") or len(text) != 7:
        return None
    try:
        return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))
    except ValueError:
        return None
