"""SVS and TIFF slides put on the archive as DICOM WSI (OrthancWSIDicomizer), then opened from a real Orthanc
and from the converted files: the same dimensions, µm/px and pixels as the source file.

Where the converter copies the source's JPEG tiles (an SVS or tiled TIFF in JPEG), the pixels are equal to
the bit. Where it must encode again (a JPEG 2000 SVS, the coarser levels it builds with ``--pyramid``), they
are compared within a stated tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathalign.io import open_slide
from tests.dicomize import COPIED, REENCODED, dicomize
from tests.orthanc import series_url

SVS = "CMU-1-Small-Region.svs"  # Aperio, JPEG tiles of 240 px, one level, label and macro
TIFF = "CMU-1-Small-Region.pyramid.generic.tif"  # 4 stored levels, JPEG tiles of 256 px
J2K = "tcga-cr-7395-01a-01-ts1.svs"  # Aperio JPEG 2000 (33005), 2 levels, no µm/px
MPP_REL = 1e-6  # the converter computes the spacing in float32


@pytest.fixture(scope="module")
def converted(tmp_path_factory, wsi_dir):
    """``converted(name, **options)``: the DICOM folder of a slide of ../shared/data/wsi, converted once."""
    root, done = tmp_path_factory.mktemp("dicomized"), {}

    def convert(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in done:
            folder = root / f"{len(done)}-{name.split('.')[0]}"
            done[key] = (folder, dicomize(wsi_dir / name, folder, **options))
        return done[key]

    return convert


def regions(shape, size=512, seed=0):
    """Top-left corners of regions to compare: the corner, the middle, a window over the far edge, random ones."""
    h, w = shape
    rng = np.random.default_rng(seed)
    corners = [(0, 0), (w // 3, h // 3), (w - size // 2, h - size // 2)]
    return corners + [
        (int(rng.integers(0, max(1, w - size))), int(rng.integers(0, max(1, h - size)))) for _ in range(3)
    ]


def assert_same_slide(converted_slide, source):
    """Same geometry, µm/px and, at every level the source stores, the same pixels to the bit."""
    assert converted_slide.level_shapes == source.level_shapes
    assert converted_slide.downsamples == source.downsamples
    assert converted_slide.n_stored_levels == source.n_stored_levels
    assert converted_slide.mpp == pytest.approx(source.mpp, rel=MPP_REL)
    assert converted_slide.mpp_source == "DICOM Pixel Spacing"
    for level in range(source.n_stored_levels):
        size = min(512, *source.level_shapes[level])
        for xy in regions(source.level_shapes[level], size):
            np.testing.assert_array_equal(
                converted_slide.read_region(xy, (size, size), level),
                source.read_region(xy, (size, size), level),
                err_msg=f"level {level}, region at {xy}",
            )
    coarsest = source.n_stored_levels - 1  # a whole level, through the dask path the viewer uses
    np.testing.assert_array_equal(np.asarray(converted_slide.levels[coarsest]), np.asarray(source.levels[coarsest]))


@pytest.mark.parametrize("name", [SVS, TIFF])
def test_jpeg_tiles_are_copied_and_read_back_equal_from_files_and_from_orthanc(converted, orthanc, wsi_dir, name):
    folder, files = converted(name)
    assert COPIED in folder.with_suffix(".log").read_text(), "the converter encoded the tiles again"
    with open_slide(wsi_dir / name) as source:
        with open_slide(folder) as local:
            assert local.format == "dicom"
            assert_same_slide(local, source)
            assert not local.associated  # the converter carries the pyramid only: no label, no macro
        orthanc.upload(*files)
        with open_slide(series_url(orthanc, files[0])) as web:
            assert web.format == "dicomweb"
            assert_same_slide(web, source)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_a_jpeg_2000_svs_is_encoded_again_within_jpeg_tolerance(converted, orthanc, wsi_dir):
    with pytest.raises(ValueError, match="no µm/px"):  # never the converter's made-up 15 mm specimen
        converted(J2K)
    folder, files = converted(J2K, mpp=0.25)  # a stand-in: the source records none
    assert REENCODED in folder.with_suffix(".log").read_text()
    orthanc.upload(*files)
    with open_slide(wsi_dir / J2K) as source, open_slide(series_url(orthanc, files[0])) as web:
        assert web.level_shapes[0] == source.level_shapes[0]
        assert web.mpp == pytest.approx(0.25, rel=MPP_REL) and source.mpp is None
        for xy in regions(source.level_shapes[0]):
            a, b = web.read_region(xy, (512, 512), 0), source.read_region(xy, (512, 512), 0)
            # JPEG quality 90 over the JPEG 2000 pixels: measured 2.1 mean and 37 dB over the level,
            # 3.05 and 35.7 dB in the worst of these regions
            assert np.abs(a.astype(int) - b).mean() <= 3.5, f"region at {xy}"
            assert psnr(a, b) >= 33.0, f"region at {xy}"
        with open_slide(folder) as local:  # the files and the server give the same pixels
            np.testing.assert_array_equal(np.asarray(local.levels[0]), np.asarray(web.levels[0]))


def test_a_pyramid_built_by_the_converter_keeps_level_0_and_adds_coarser_levels(converted, wsi_dir):
    folder, _ = converted(SVS, levels=3)
    with open_slide(wsi_dir / SVS) as source, open_slide(folder) as local:
        assert local.n_stored_levels == 3 and source.n_stored_levels == 1
        assert local.level_shapes[0] == source.level_shapes[0]
        np.testing.assert_array_equal(np.asarray(local.levels[0]), np.asarray(source.levels[0]))
        # its own downsampling (rows rounded up: 1484 for 2967 / 2) and JPEG quality 90: measured 5.8 mean
        # difference from our level 1 (a 2 x 2 mean), up to 15 in dense tissue
        h, w = (min(a, b) for a, b in zip(local.level_shapes[1], source.level_shapes[1], strict=True))
        a, b = local.read_region((0, 0), (w, h), 1), source.read_region((0, 0), (w, h), 1)
        assert np.abs(a.astype(int) - b).mean() <= 8.0
