"""Feature cache (TRIDENT layout, atomic, keyed by content + grid + encoder) and batch embedding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from napari_pathalign.core.grid_config import GridConfig
from napari_pathalign.engine.batch import embed_many, expand_slides  # noqa: E402
from napari_pathalign.engine.features import embed_slide  # noqa: E402
from napari_pathalign.io import open_slide  # noqa: E402
from napari_pathalign.io.features import SlideFeatures, read_features, write_features  # noqa: E402
from napari_pathalign.models.encoders import load_patch_encoder  # noqa: E402
from tests.synthetic import write_pyramid  # noqa: E402

SMALL = GridConfig(patch_size=64, target_mpp=1.0, max_patches=200)


@pytest.fixture(scope="module")
def tiny():
    return load_patch_encoder("test-tiny", device="cpu")


def test_trident_layout_round_trip(tmp_path):
    import h5py

    feats = SlideFeatures(
        np.random.rand(5, 8).astype(np.float32),
        np.arange(10).reshape(5, 2) * 448,
        224,
        448,
        0.5,
        0.25,
        (8000, 9000),
        "test-tiny",
        "abc",
        "key1",
    )
    path = write_features(tmp_path / "s.h5", feats)
    with h5py.File(path) as f:  # what TRIDENT / CLAM readers look for
        assert f["coords"].shape == (5, 2) and f["features"].shape == (5, 8)
        a = f["coords"].attrs
        assert (a["patch_size"], a["patch_size_level0"], a["level0_magnification"], a["target_magnification"]) == (
            224,
            448,
            40.0,
            20.0,
        )
        assert (a["level0_width"], a["level0_height"]) == (9000, 8000)
    back = read_features(path)
    np.testing.assert_array_equal(back.features, feats.features)
    np.testing.assert_array_equal(back.xy_level0, feats.xy_level0)
    assert (back.target_mpp, back.mpp, back.encoder, back.cache_key) == (0.5, 0.25, "test-tiny", "key1")


def test_reads_a_trident_file_without_our_attributes(tmp_path):
    import h5py

    path = tmp_path / "trident.h5"
    with h5py.File(path, "w") as f:  # as TRIDENT writes it: no encoder/mpp attributes of ours
        c = f.create_dataset("coords", data=np.array([[0, 0], [512, 0]]))
        c.attrs.update(
            patch_size=256,
            patch_size_level0=512,
            level0_magnification=40,
            target_magnification=20,
            level0_width=1024,
            level0_height=512,
        )
        f.create_dataset("features", data=np.ones((2, 4), np.float32))
    feats = read_features(path)
    assert feats.target_mpp == pytest.approx(0.5) and feats.mpp == pytest.approx(0.25) and feats.size_level0 == 512


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    feats = SlideFeatures(
        np.zeros((2, 3), np.float32), np.zeros((2, 2), np.int64), 224, 224, None, None, (10, 10), "x", "y"
    )
    import h5py

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", boom)
    with pytest.raises(OSError, match="disk full"):
        write_features(tmp_path / "s.h5", feats)
    assert list(tmp_path.iterdir()) == []  # no half file, no temporary left behind


def test_embed_caches_and_invalidates(tmp_path, tiny, wsi_dir):
    slide_path = tmp_path / "slide.svs"
    shutil.copy(wsi_dir / "CMU-1-Small-Region.svs", slide_path)
    cache = tmp_path / "cache"
    with open_slide(slide_path) as slide:
        calls = []
        first = embed_slide(slide, tiny, SMALL, cache, progress=lambda d, t: calls.append((d, t)))
        assert first.features.shape[1] == 32 and len(first.features) > 20
        assert calls[-1][0] == calls[-1][1] == len(first.features)
        assert len(list(cache.glob("*.h5"))) == 1
        decoded = slide.tiles_decoded
        again = embed_slide(slide, tiny, SMALL, cache)  # cache hit: no pixel decoded
        assert slide.tiles_decoded == decoded
        np.testing.assert_array_equal(again.features, first.features)
        embed_slide(slide, tiny, GridConfig(64, 1.0, 100), cache)  # other grid: recomputed
        assert len(list(cache.glob("*.h5"))) == 2
    # other weights for the same encoder: recomputed
    from safetensors.torch import save_file

    other = load_patch_encoder("test-tiny", device="cpu")
    for p in other.module.parameters():
        p.data += 1
    save_file({k: v.contiguous() for k, v in other.module.state_dict().items()}, str(tmp_path / "w.safetensors"))
    with open_slide(slide_path) as slide:
        embed_slide(slide, load_patch_encoder("test-tiny", tmp_path / "w.safetensors", "cpu"), SMALL, cache)
    assert len(list(cache.glob("*.h5"))) == 3
    # the same path with other content: recomputed, never the stale features
    write_pyramid(slide_path, shape=(1024, 1024), levels=1, mpp=0.5)
    with open_slide(slide_path) as slide:
        changed = embed_slide(slide, tiny, SMALL, cache)
    assert len(list(cache.glob("*.h5"))) == 4 and changed.shape_level0 == (1024, 1024)


def test_batch_skips_a_bad_slide_and_finishes_the_rest(tmp_path, wsi_dir):
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copy(wsi_dir / "CMU-1-Small-Region.svs", folder / "good.svs")
    (folder / "broken.svs").write_bytes(b"not a slide")
    shutil.copytree(wsi_dir / "CMU-1-Small-Region-dicom", folder / "dicom")
    slides = expand_slides([folder])
    assert {p.name for p in slides} == {"good.svs", "broken.svs", "dicom"}
    results = {r.slide.name: r for r in embed_many(slides, "test-tiny", None, tmp_path / "out", SMALL, device="cpu")}
    assert "not a whole-slide image" in results["broken.svs"].error
    assert results["good.svs"].n_patches > 20 and not results["good.svs"].error
    assert abs(results["dicom"].n_patches - results["good.svs"].n_patches) <= 2  # same tissue, re-encoded as DICOM
    assert len(list((tmp_path / "out").glob("*.h5"))) == 2


@pytest.mark.slow
def test_cli_embed_on_a_local_dask_cluster(tmp_path, wsi_dir):
    from napari_pathalign.cli import main

    code = main(
        [
            "embed",
            str(wsi_dir / "CMU-1-Small-Region.svs"),
            str(tmp_path / "missing.svs"),
            "--encoder",
            "test-tiny",
            "--out",
            str(tmp_path / "out"),
            "--patch-size",
            "64",
            "--target-mpp",
            "1.0",
            "--workers",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 1  # one slide failed, and said so
    assert len(list((tmp_path / "out").glob("*.h5"))) == 1


def test_cli_embed_rejects_unknown_encoder(tmp_path, wsi_dir, capsys):
    from napari_pathalign.cli import main

    assert main(["embed", str(wsi_dir / "CMU-1-Small-Region.svs"), "--encoder", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown patch encoder 'nope'" in capsys.readouterr().err
