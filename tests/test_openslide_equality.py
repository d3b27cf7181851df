"""Our pixels equal OpenSlide's on every real file in ../shared/data/wsi that OpenSlide opens.

Measured on these files: every decoder pair agrees exactly (mean absolute difference 0), so the
tests demand exact equality. Two JPEG decoders may legitimately differ by rounding in IDCT and
chroma upsampling; if a file ever needs it, the allowed tolerance is a mean absolute difference
below 0.5 grey level, asserted through ``assert_same_pixels``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_pathalign.io import open_slide

openslide = pytest.importorskip("openslide")

FILES = [
    "CMU-1-Small-Region.svs",  # Aperio, JPEG, 240-px tiles, partial edge tiles
    "tcga-cr-7395-01a-01-ts1.svs",  # Aperio, JPEG 2000, 2 levels
    "CMU-1-Small-Region.pyramid.generic.tif",  # generic JPEG pyramid, 4 levels
    "CMU-1-Small-Region.pyramid.ome.tif",  # OME-TIFF (OpenSlide sees level 0 only)
    "CMU-1-Small-Region-dicom",  # DICOM WSI folder
    "highdicom_sm_image.dcm",  # tiny tiled DICOM, one file
    "openslide-python/small.svs",
    "openslide-python/boxes.tiff",  # deflate pyramid
    "openslide-python/boxes_0.dcm",
]


def openslide_path(path: Path) -> Path:
    """OpenSlide opens a DICOM series through any one of its files, not the folder."""
    return max(path.glob("*.dcm"), key=lambda p: p.stat().st_size) if path.is_dir() else path


def openslide_read(osr, xy, level, size) -> np.ndarray:
    """OpenSlide's region as RGB on white: it returns premultiplied RGBA, transparent beyond the edge."""
    rgba = np.asarray(osr.read_region(xy, level, size))
    alpha = rgba[..., 3:4].astype(np.uint16)
    return (rgba[..., :3] + (255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def assert_same_pixels(ours: np.ndarray, ref: np.ndarray, where: str) -> None:
    assert ours.shape == ref.shape, f"{where}: shape {ours.shape} != OpenSlide {ref.shape}"
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < 0.5, f"{where}: mean abs difference {diff.mean():.3f} >= 0.5 grey level"
    assert diff.max() == 0, f"{where}: {np.count_nonzero(diff)} pixels differ (max {diff.max()})"


@pytest.fixture(params=FILES)
def pair(request, wsi_dir):
    path = wsi_dir / request.param
    osr = openslide.OpenSlide(str(openslide_path(path)))
    with open_slide(path) as slide:
        yield slide, osr
    osr.close()


def test_metadata_matches_openslide(pair):
    slide, osr = pair
    shared = min(slide.n_stored_levels, osr.level_count)
    assert [(w, h) for h, w in slide.level_shapes[:shared]] == list(osr.level_dimensions[:shared])
    np.testing.assert_allclose(slide.downsamples[:shared], osr.level_downsamples[:shared], rtol=1e-9)
    os_mpp = osr.properties.get("openslide.mpp-x")
    if slide.mpp is not None:
        assert slide.mpp == pytest.approx(float(os_mpp), rel=1e-6)


def test_every_level_whole_and_beyond_edges(pair):
    """Each stored level read whole from (0, 0), 37 px wider and 41 px taller than the level."""
    slide, osr = pair
    for level in range(min(slide.n_stored_levels, osr.level_count)):
        w, h = osr.level_dimensions[level]
        size = (w + 37, h + 41)
        ours = slide.read_region((0, 0), size, level)
        assert_same_pixels(ours, openslide_read(osr, (0, 0), level, size), f"level {level} whole")
        assert (ours[h:] == 255).all() and (ours[:, w:] == 255).all(), "beyond the edge must be white"
        # the lazy display array holds the same pixels
        assert_same_pixels(np.asarray(slide.levels[level]), ours[:h, :w], f"display level {level}")


def test_level0_regions_across_tile_borders_and_edges(pair):
    slide, osr = pair
    h, w = slide.shape_level0
    th, tw = slide.tile_size
    rng = np.random.default_rng(0)
    regions = [
        ((tw - 7, th - 5), (19, 23)),  # straddles the first tile corner
        ((max(w - 100, 0), max(h - 90, 0)), (160, 150)),  # crosses the right and bottom edges
        ((-30, -20), (64, 64)),  # starts before the slide
    ]
    for _ in range(6):
        rw, rh = (int(v) for v in rng.integers(1, max(2, min(w, h, 600)), 2))
        regions.append(((int(rng.integers(0, max(1, w - rw))), int(rng.integers(0, max(1, h - rh)))), (rw, rh)))
    for xy, size in regions:
        assert_same_pixels(slide.read_region(xy, size, 0), openslide_read(osr, xy, 0, size), f"region {xy} {size}")


def test_upper_level_regions_are_slices_of_openslide_level(pair):
    """At level k, xy_level0 maps to the nearest level pixel; the pixels are the stored ones.

    OpenSlide itself resamples (bilinear, through cairo) when xy_level0 / downsample is not a whole
    number, so regions are compared with slices of OpenSlide's whole-level read instead.
    """
    slide, osr = pair
    for level in range(1, min(slide.n_stored_levels, osr.level_count)):
        lw, lh = osr.level_dimensions[level]
        whole = openslide_read(osr, (0, 0), level, (lw, lh))
        ds = slide.downsamples[level]
        for x, y in ((lw // 3, lh // 4), (max(lw - 50, 0), max(lh - 40, 0))):
            xy0 = (round(x * ds), round(y * ds))
            ours = slide.read_region(xy0, (120, 90), level)
            ref = np.full((90, 120, 3), 255, np.uint8)
            part = whole[y : y + 90, x : x + 120]
            ref[: part.shape[0], : part.shape[1]] = part
            assert_same_pixels(ours, ref, f"level {level} region at {(x, y)}")


def test_ome_subresolutions_equal_openslide_generic_pyramid(wsi_dir):
    """OpenSlide ignores OME sub-resolution IFDs; the same pixels exist as a generic pyramid."""
    osr = openslide.OpenSlide(str(wsi_dir / "CMU-1-Small-Region.pyramid.generic.tif"))
    with open_slide(wsi_dir / "CMU-1-Small-Region.pyramid.ome.tif") as slide:
        assert slide.n_stored_levels == osr.level_count == 4
        for level in range(1, 4):
            w, h = osr.level_dimensions[level]
            assert_same_pixels(
                slide.read_region((0, 0), (w, h), level),
                openslide_read(osr, (0, 0), level, (w, h)),
                f"OME level {level}",
            )
