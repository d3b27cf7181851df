"""QuPath GeoJSON and ASAP XML annotations: what QuPath writes is read, what we write reads back the same."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from napari_pathalign.io import Annotation, check_bounds, read_annotations, write_annotations

DATA = Path(__file__).parent / "data"
QUPATH_04 = DATA / "qupath_0.4_objects.geojson"  # a FeatureCollection as QuPath 0.4/0.5 export it
QUPATH_02 = DATA / "qupath_0.2_list.json"  # QuPath 0.2's plain list of features, colorRGB, measurement lists


def test_reads_qupath_feature_collection():
    anns = read_annotations(QUPATH_04)
    assert [a.geometry["type"] for a in anns] == [
        "Polygon",
        "MultiPolygon",
        "LineString",
        "Point",
        "MultiPoint",
        "Polygon",
    ]
    follicle = anns[0]
    assert follicle.name == "Follicle region" and follicle.classification == "Tumor" and follicle.color == (200, 0, 0)
    assert len(follicle.geometry["coordinates"]) == 2, "the hole is kept"
    assert follicle.geometry["coordinates"][1][0] == [1220.0, 1950.0]
    assert follicle.properties["measurements"] == {"Area µm^2": 123456.5}
    assert anns[1].properties["isLocked"] is True and len(anns[1].geometry["coordinates"]) == 2
    assert anns[2].classification is None and anns[2].color is None and anns[2].name == "Depth"
    assert anns[3].geometry["coordinates"] == [1250.5, 1980.25]
    assert [a.object_type for a in anns] == ["annotation"] * 5 + ["detection"]
    assert anns[0].id == "8a7c1b52-3f1e-4c35-9d7e-2f0d4a1b6c01"


def test_reads_qupath_02_list_with_packed_colours_and_measurement_lists():
    tumour, cell = read_annotations(QUPATH_02)
    assert tumour.classification == "Tumor" and tumour.color == (200, 0, 0)  # colorRGB -3670016 = 0xFFC80000
    assert cell.color == (0, 0, 255) and cell.object_type == "detection" and tumour.object_type == "annotation"
    assert cell.properties["measurements"] == {"Nucleus: Area": 21.5, "Cell: Circularity": 0.87}
    assert tumour.id is None, "0.2's class-name ids are not identities"


def test_reads_features_before_the_type_key(tmp_path):
    """The collection is read feature by feature (the window stays live); key order does not matter."""
    doc = '{"features": [{"type": "Point", "coordinates": [1, 2]}], "bbox": [0, 0, 9, 9], "type": "FeatureCollection"}'
    (tmp_path / "a.geojson").write_text(doc)
    assert read_annotations(tmp_path / "a.geojson")[0].geometry == {"type": "Point", "coordinates": [1, 2]}


def test_reads_a_single_feature_a_bare_geometry_and_derived_classes(tmp_path):
    feature = {
        "type": "Feature",
        "geometry": {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}] * 2},
        "properties": {"classification": {"names": ["Tumor", "Positive"], "color": [1, 2, 3]}},
    }
    (tmp_path / "one.geojson").write_text(json.dumps(feature))
    anns = read_annotations(tmp_path / "one.geojson")
    assert len(anns) == 2 and anns[0].classification == "Tumor: Positive" and anns[1].color == (1, 2, 3)
    (tmp_path / "bare.json").write_text(json.dumps({"type": "LineString", "coordinates": [[0, 0], [3, 4]]}))
    (line,) = read_annotations(tmp_path / "bare.json")
    assert line.geometry == {"type": "LineString", "coordinates": [[0.0, 0.0], [3.0, 4.0]]}


@pytest.mark.parametrize("source", [QUPATH_04, QUPATH_02])
def test_round_trip_keeps_geometry_classes_and_properties(tmp_path, source):
    first = read_annotations(source)
    out = write_annotations(first, tmp_path / "out.geojson")
    again = read_annotations(out)
    assert [a.geometry for a in again] == [a.geometry for a in first]
    for a, b in zip(first, again):
        assert (a.classification, a.color, a.name, a.object_type) == (b.classification, b.color, b.name, b.object_type)
        assert b.properties["measurements"] == a.properties.get("measurements", {})
        assert b.properties["isLocked"] == a.properties.get("isLocked", False)
        assert a.id is None or a.id == b.id


def test_written_file_is_geojson_as_qupath_writes_it(tmp_path):
    ring = [[0, 0], [10, 0], [10, 10], [0, 10]]  # open: the writer closes it
    anns = [Annotation({"type": "Polygon", "coordinates": [ring]}, "Stroma", (150, 200, 150), name="S1")]
    doc = json.loads(write_annotations(anns, tmp_path / "a.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    (feature,) = doc["features"]
    uuid.UUID(feature["id"])  # QuPath keeps ids that are UUIDs
    assert feature["geometry"]["coordinates"][0][-1] == [0, 0], "rings are closed"
    assert feature["properties"] == {
        "objectType": "annotation",
        "classification": {"name": "Stroma", "color": [150, 200, 150]},
        "name": "S1",
        "isLocked": False,
        "measurements": {},
    }


def test_write_never_overwrites_unasked_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "a.geojson"
    anns = read_annotations(QUPATH_02)
    write_annotations(anns, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_annotations(anns[:1], path)
    assert len(read_annotations(path)) == 2
    write_annotations(anns[:1], path, overwrite=True)
    assert len(read_annotations(path)) == 1
    holes = read_annotations(QUPATH_04)[:1]
    with pytest.raises(ValueError, match="holes.*GeoJSON"):
        write_annotations(holes, tmp_path / "a.xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.geojson"], "no partial file is left"


def test_asap_xml_round_trip(tmp_path):
    anns = [a for a in read_annotations(QUPATH_04) if a.geometry["type"] in ("Point", "MultiPoint", "LineString")]
    anns.append(read_annotations(QUPATH_02)[0])
    again = read_annotations(write_annotations(anns, tmp_path / "a.xml"))
    assert [a.geometry for a in again] == [a.geometry for a in anns]
    assert [a.classification for a in again] == [a.classification for a in anns]
    assert again[-1].color == (200, 0, 0)


def _feature(geometry, **props):
    return {"type": "Feature", "geometry": geometry, "properties": props}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "not JSON"),
        (b'"a string"', "expected a FeatureCollection"),
        (b'[{"type": "Point", "coordinates": [1, 2]}] trailing', "not JSON .Extra data"),
        (b'{"features": [{"type": "Point", "coordinates": [1, 2]}', "not JSON"),
        (b'{"features": [], "type": "Topology"}', "type 'Topology'"),
        (json.dumps(_feature({"type": "Circle", "coordinates": [0, 0]}, name="C1")), "feature 0 .'C1'.*Circle"),
        (json.dumps(_feature({"type": "Polygon", "coordinates": [[[0, 0], [1]]]})), r"not a list of \[x, y\]"),
        (json.dumps(_feature({"type": "LineString", "coordinates": [[0, 0]]})), "at least 2"),
        (b'{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 1]}}', "finite"),
        (json.dumps(_feature({"type": "Point", "coordinates": [0, 0]}, classification={"color": [300, 0, 0]})), "255"),
        (json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}), "no geometry"),
    ],
)
def test_bad_files_are_refused_in_words(tmp_path, content, message):
    path = tmp_path / "bad.geojson"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        read_annotations(path)


def test_unknown_suffix_and_bad_xml_are_refused(tmp_path):
    (tmp_path / "a.txt").write_text("{}")
    with pytest.raises(ValueError, match=r"\.geojson, \.json, \.xml"):
        read_annotations(tmp_path / "a.txt")
    (tmp_path / "a.xml").write_text("<Other/>")
    with pytest.raises(ValueError, match="ASAP_Annotations"):
        read_annotations(tmp_path / "a.xml")


def test_check_bounds_names_the_feature_off_the_slide():
    anns = read_annotations(QUPATH_04)
    check_bounds(anns, 2220, 2967)  # CMU-1-Small-Region: all on the slide
    with pytest.raises(ValueError, match=r"annotation 0 \('Follicle region'\) lies off the slide.*1500 x 2967"):
        check_bounds(anns, 1500, 2967)
