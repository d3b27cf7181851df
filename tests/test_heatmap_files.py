"""Heatmap files: QuPath GeoJSON and TRIDENT HDF5 round-trips, the PNG picture, and safe writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import napari_pathalign.io.heatmap_files as hf
from napari_pathalign.core.heatmap import Heatmap
from napari_pathalign.io.heatmap_files import read_heatmap, write_heatmap

S = 224


@pytest.fixture
def heatmap() -> Heatmap:
    """A percentile-normalised map over a 5 x 7 lattice with holes, one NaN patch and a non-ASCII label."""
    rng = np.random.default_rng(1)
    cells = np.argwhere(rng.random((5, 7)) < 0.7)  # (N, 2) lattice (row, col)
    xy = (cells[:, ::-1] + [4, 10]) * S  # (N, 2) level-0 (x, y), away from the origin
    values = rng.normal(size=len(cells)).astype(np.float32)
    values[3] = np.nan
    params = {"layer": np.int64(11), "heads": (0, 3), "text": "lymphocytes", "temperature": np.float32(0.5)}
    h = Heatmap(values, xy, S, 0.2527, "text", "similarity to 'lymphocytes' µ", params=params)
    return h.normalised("percentile")


def _assert_same(a: Heatmap, b: Heatmap) -> None:
    np.testing.assert_array_equal(a.values, b.values)  # NaN equal to NaN
    np.testing.assert_array_equal(a.raw_values, b.raw_values)
    np.testing.assert_array_equal(a.xy_level0, b.xy_level0)
    assert b.xy_level0.dtype == np.int64
    assert (a.size_level0, a.mpp, a.kind, a.label, a.normalisation) == (
        b.size_level0,
        b.mpp,
        b.kind,
        b.label,
        b.normalisation,
    )


@pytest.mark.parametrize("suffix", [".geojson", ".h5"])
def test_round_trip(heatmap, tmp_path, suffix):
    path = write_heatmap(heatmap, tmp_path / f"map{suffix}")
    back = read_heatmap(path)
    _assert_same(heatmap, back)
    assert back.params == {"layer": 11, "heads": [0, 3], "text": "lymphocytes", "temperature": 0.5}
    _assert_same(heatmap.normalised("rank"), back.normalised("rank"))  # raw values came back too


@pytest.mark.parametrize("suffix", [".geojson", ".h5"])
def test_round_trip_without_mpp(heatmap, tmp_path, suffix):
    h = Heatmap(heatmap.raw_values, heatmap.xy_level0, S, None, "attention", "attention")
    _assert_same(h, read_heatmap(write_heatmap(h, tmp_path / f"map{suffix}")))


def _reject_nan(name):
    raise AssertionError(f"invalid JSON constant {name} written")


def test_geojson_is_qupath_tiles(heatmap, tmp_path):
    doc = json.loads(
        write_heatmap(heatmap, tmp_path / "map.geojson").read_text(encoding="utf-8"), parse_constant=_reject_nan
    )
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == len(heatmap)
    assert doc["pathalign"]["kind"] == "text" and doc["pathalign"]["normalisation"] == "percentile"
    for (x, y), v, f in zip(heatmap.xy_level0.tolist(), heatmap.values, doc["features"]):
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        (ring,) = f["geometry"]["coordinates"]
        assert ring[0] == ring[-1] and len(ring) == 5  # closed
        assert ring[:4] == [[x, y], [x + S, y], [x + S, y + S], [x, y + S]]
        props = f["properties"]
        assert props["objectType"] == "tile" and props["name"]
        m = props["measurements"]
        assert all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in m.values())
        if np.isfinite(v):
            assert m["text"] == pytest.approx(float(v)) and 0 <= m["text"] <= 1
        else:
            assert "text" not in m  # no NaN in JSON: the measurement is left out


def test_geojson_reexported_by_qupath_reads_without_our_metadata(heatmap, tmp_path):
    """QuPath drops foreign members and writes float coordinates: size and measurement come from the tiles."""
    path = write_heatmap(heatmap, tmp_path / "map.geojson")
    doc = json.loads(path.read_text(encoding="utf-8"))
    del doc["pathalign"]
    for f in doc["features"]:
        f["geometry"]["coordinates"] = [[[float(x), float(y)] for x, y in f["geometry"]["coordinates"][0]]]
    path.write_text(json.dumps(doc), encoding="utf-8")
    back = read_heatmap(path)
    np.testing.assert_array_equal(back.values, heatmap.values)
    np.testing.assert_array_equal(back.xy_level0, heatmap.xy_level0)
    assert back.size_level0 == S and back.kind == "text" and back.mpp is None


def test_h5_has_tridents_layout(heatmap, tmp_path):
    import h5py

    with h5py.File(write_heatmap(heatmap, tmp_path / "map.h5"), "r") as f:
        assert f["coords"].dtype == np.int64 and f["coords"].shape == (len(heatmap), 2)
        assert f["coords"].attrs["patch_size_level0"] == S
        assert f["scores"].dtype == np.float32 and f["scores"].shape == (len(heatmap),)
        assert f.attrs["kind"] == "text" and f.attrs["mpp"] == pytest.approx(0.2527)
        assert json.loads(f.attrs["params"])["layer"] == 11


def test_png_is_a_picture_with_transparent_holes(heatmap, tmp_path):
    from PIL import Image

    with Image.open(write_heatmap(heatmap, tmp_path / "map.png")) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        rows, cols = heatmap.raster().image.shape
        assert im.width > cols * 4 and im.height > rows * 4
        assert "lymphocytes" in im.info["Title"]
        px = np.asarray(im)  # (H, W, 4)
    alpha = px[..., 3]
    assert (alpha == 0).any() and (alpha == 255).any()
    opaque = px[alpha == 255][:, :3]
    assert len(np.unique(opaque, axis=0)) > 20  # a colour ramp, not a blank


def test_existing_file_is_not_overwritten_unless_asked(heatmap, tmp_path):
    path = tmp_path / "map.geojson"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_heatmap(heatmap, path)
    assert path.read_text() == "keep me"
    write_heatmap(heatmap, path, overwrite=True)
    _assert_same(heatmap, read_heatmap(path))


def test_failure_mid_write_leaves_no_file(heatmap, tmp_path, monkeypatch):
    def half_then_fail(hm, tmp):
        tmp.write_text('{"type": "FeatureCollection", "feat')
        raise OSError("disk full")

    monkeypatch.setattr(hf, "_write_geojson", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_heatmap(heatmap, tmp_path / "map.geojson")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("suffix", "patched"), [(".h5", "magnification"), (".png", "_colours")])
def test_failure_inside_a_real_writer_keeps_the_old_file(heatmap, tmp_path, monkeypatch, suffix, patched):
    path = write_heatmap(heatmap, tmp_path / f"map{suffix}")
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(hf, patched, fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_heatmap(heatmap, path, overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_bad_suffix_and_empty_heatmap_raise(heatmap, tmp_path):
    with pytest.raises(ValueError, match=r"'\.tif'.*\.geojson"):
        write_heatmap(heatmap, tmp_path / "map.tif")
    with pytest.raises(ValueError, match="picture only"):
        read_heatmap(tmp_path / "map.png")
    empty = Heatmap(np.zeros(0), np.zeros((0, 2)), S, 0.5, "text", "x")
    with pytest.raises(ValueError, match="no patches"):
        write_heatmap(empty, tmp_path / "map.h5")
    assert list(tmp_path.iterdir()) == []


def test_reading_a_feature_file_says_what_is_missing(tmp_path):
    import h5py

    with h5py.File(tmp_path / "feats.h5", "w") as f:
        f.create_dataset("coords", data=np.zeros((2, 2), np.int64))
        f.create_dataset("features", data=np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="'scores'"):
        read_heatmap(tmp_path / "feats.h5")
