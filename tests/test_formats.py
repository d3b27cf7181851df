"""Reader metadata, lazy derived levels, thumbnails and DICOM series handling."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from napari_pathalign.io import Slide, open_slide
from tests.synthetic import tissue_like, write_pyramid


@pytest.mark.parametrize(
    "name, fmt, mpp, associated",
    [
        ("CMU-1-Small-Region.svs", "aperio-svs", 0.499, {"thumbnail", "label", "macro"}),
        ("tcga-cr-7395-01a-01-ts1.svs", "aperio-svs", None, {"thumbnail"}),
        ("CMU-1-Small-Region.pyramid.generic.tif", "generic-tiff", 0.499, set()),
        ("CMU-1-Small-Region.pyramid.ome.tif", "ome-tiff", 0.499, set()),
        ("CMU-1-Small-Region-dicom", "dicom", 0.499, {"label", "macro"}),
        ("highdicom_sm_image.dcm", "dicom", 0.499, set()),
    ],
)
def test_format_mpp_and_associated(wsi_dir, name, fmt, mpp, associated):
    with open_slide(wsi_dir / name) as slide:
        assert slide.format == fmt
        assert slide.mpp == (pytest.approx(mpp) if mpp else None)
        assert set(slide.associated) == associated
        for image in slide.associated.values():
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert all(level.dtype == np.uint8 and level.shape[2] == 3 for level in slide.levels)


def test_no_mpp_says_why(wsi_dir):
    with open_slide(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs") as slide:
        assert slide.mpp is None
        assert "MPP" in slide.mpp_source
    # 72 dpi is a writer's default, not a microscope calibration: ignored, never trusted
    with open_slide(wsi_dir / "openslide-python" / "boxes.tiff") as slide:
        assert slide.mpp is None and "writer's default" in slide.mpp_source


def test_dask_chunks_are_the_stored_tiles(wsi_dir):
    with open_slide(wsi_dir / "CMU-1-Small-Region.svs") as slide:
        assert slide.levels[0].chunksize == (240, 240, 3)
    with open_slide(wsi_dir / "CMU-1-Small-Region-dicom") as slide:
        assert slide.levels[0].chunksize == (240, 240, 3)


def test_tiff_without_pyramid_gets_lazy_lower_levels(tmp_path):
    """A flat TIFF still gets a pyramid, built on demand by 2x2 box averaging."""
    path = tmp_path / "flat.tif"
    img = tissue_like((3000, 4100))
    tifffile.imwrite(
        path,
        img,
        tile=(256, 256),
        compression="zlib",
        photometric="rgb",
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
    )
    with open_slide(path) as slide:
        assert slide.n_stored_levels == 1
        assert slide.level_shapes == [(3000, 4100), (1500, 2050), (750, 1025), (375, 512)]
        assert slide.mpp == pytest.approx(0.5)
        decoded_before = slide.tiles_decoded
        level2 = slide.read_region((0, 0), (1025, 750), level=2)
        expected = img[:3000, :4100].astype(np.uint16).reshape(1500, 2, 2050, 2, 3).sum(axis=(1, 3))
        expected = ((expected + 2) // 4).astype(np.uint8)
        expected = (
            (expected[:1500, :2050].astype(np.uint16).reshape(750, 2, 1025, 2, 3).sum(axis=(1, 3)) + 2) // 4
        ).astype(np.uint8)
        np.testing.assert_array_equal(level2, expected)
        # each stored tile decoded once although two derived levels were built from it
        assert slide.tiles_decoded - decoded_before == 12 * 17
        np.testing.assert_array_equal(np.asarray(slide.levels[2]), expected)


def test_thumbnail(wsi_dir):
    with open_slide(wsi_dir / "CMU-1-Small-Region.svs") as slide:
        thumb = slide.thumbnail(300)
        assert thumb.shape == (300, 224, 3)
        assert 150 < thumb.mean() < 250  # tissue on white, not black or blank
        with pytest.raises(ValueError, match="max_size"):
            slide.thumbnail(0)


def test_read_region_argument_errors(pyramid_tif):
    with open_slide(pyramid_tif) as slide:
        with pytest.raises(ValueError, match="level 9"):
            slide.read_region((0, 0), (10, 10), level=9)
        with pytest.raises(ValueError, match="size"):
            slide.read_region((0, 0), (-1, 10))
        assert slide.read_region((0, 0), (0, 0)).shape == (0, 0, 3)


def test_synthetic_pyramid_levels_and_scale(pyramid_tif):
    with open_slide(pyramid_tif) as slide:
        assert isinstance(slide, Slide) and slide.format == "generic-tiff"
        assert slide.n_stored_levels == 3 and slide.mpp == pytest.approx(0.5)
        assert slide.downsamples[:3] == [1.0, 2.0, 4.0]
        assert "generic-tiff" in repr(slide) and "0.5 µm/px" in repr(slide)


def test_one_dicom_file_opens_its_whole_series(wsi_dir, tmp_path):
    """Dropping the thumbnail instance of a series opens the slide it belongs to, as OpenSlide does."""
    for name in ("boxes_0.dcm", "boxes_1.dcm"):
        shutil.copy(wsi_dir / "openslide-python" / name, tmp_path / name)
    with open_slide(tmp_path / "boxes_1.dcm") as slide:
        assert slide.format == "dicom" and slide.shape_level0 == (16, 16)


def test_bigtiff_pyramid(tmp_path):
    path = write_pyramid(tmp_path / "big.tif", shape=(600, 700), levels=2, bigtiff=True)
    with open_slide(path) as slide:
        assert slide.level_shapes[:2] == [(600, 700), (300, 350)]
        assert slide.read_region((0, 0), (700, 600)).shape == (600, 700, 3)


@pytest.mark.parametrize(
    "layout",
    [
        dict(tile=(256, 256), photometric="rgb"),  # uncompressed tiles
        dict(rowsperstrip=64, compression="lzw", photometric="rgb"),  # strips, not tiles
        dict(tile=(256, 256), gray=True),  # one sample: shown as RGB
        dict(tile=(256, 256), photometric="rgb", alpha=True),  # RGBA: alpha dropped
    ],
    ids=["uncompressed", "striped-lzw", "gray", "rgba"],
)
def test_tiff_layouts_read_exactly(tmp_path, layout):
    img = tissue_like((1000, 1300))
    data, expected = img, img
    if layout.pop("gray", False):
        data, expected = img[..., 0], np.repeat(img[..., :1], 3, axis=-1)
    if layout.pop("alpha", False):
        data = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
        layout["extrasamples"] = ["unassalpha"]
    path = tmp_path / "layout.tif"
    tifffile.imwrite(path, data, **layout)
    with open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region((100, 100), (500, 300)), expected[100:400, 100:600])
        np.testing.assert_array_equal(np.asarray(slide.levels[0]), expected)
