"""Tissue detection on labelled real fixtures, patch grids, tile-aligned extraction."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_pathalign.io import open_slide
from napari_pathalign.tiling.extract import extract_patches
from napari_pathalign.tiling.grid import patch_grid
from napari_pathalign.tiling.tissue import detect_tissue, tissue_mask
from tests.conftest import SHARED_DATA
from tests.synthetic import write_big_pyramid

FIXTURES = SHARED_DATA / "tiles" / "tissue_detection"

# (file, min tissue, max tissue, min ink): what each labelled fixture must give
EXPECTATIONS = [
    ("no-tissue.png", 0.0, 0.01, 0.0),  # bare glass
    ("no-tissue2.png", 0.0, 0.01, 0.0),
    ("almost-white-1.png", 0.0, 0.01, 0.0),  # near-white glass is not tissue
    ("almost-white-ihc.png", 0.0, 0.01, 0.0),
    ("almost-white-2.png", 0.0, 0.08, 0.0),  # a faint corner of tissue at most
    ("no-tissue-line.png", 0.0, 0.01, 0.0),  # a black line (coverslip edge) is not tissue
    ("no-tissue-green-pen.png", 0.0, 0.02, 0.5),  # green ink only
    ("no-tissue-red-pen.png", 0.0, 0.40, 0.3),  # red ink, mostly rejected (its dark blur looks like stain)
    ("tcga-lung-rgb.png", 0.7, 1.0, 0.0),  # H&E tissue filling the view
    ("tissue-level2-4640-4649-8736-8746.png", 0.5, 0.9, 0.0),
    ("tissue-level0-7352-11762-7864-12274.png", 0.6, 1.0, 0.0),
    ("liver-level2-10907-7808-11707-8608.png", 0.9, 1.0, 0.0),
    ("kidney-ihc-level0-340-520-390-550.png", 0.6, 1.0, 0.0),  # IHC: blue counterstain is tissue, not ink
    ("kidney-ihc-level0-350-530-360-540.png", 0.9, 1.0, 0.0),
    ("tcga-red-pen.png", 0.4, 0.75, 0.15),  # tissue kept, red ink rejected
    ("tcga-green-pen.png", 0.5, 0.85, 0.15),  # tissue kept, green ink rejected
    ("medium-nuclei-score-green-pen-level1.png", 0.2, 0.6, 0.3),
    ("diagnostic-slide-thumb-rgb.png", 0.3, 0.7, 0.15),  # red/green/black outlines rejected
]


@pytest.mark.parametrize("name, lo, hi, min_ink", EXPECTATIONS, ids=[e[0] for e in EXPECTATIONS])
def test_tissue_on_labelled_fixtures(name, lo, hi, min_ink):
    rgb = np.asarray(Image.open(FIXTURES / name).convert("RGB"))
    tissue, ink = detect_tissue(rgb)
    assert lo <= tissue.mean() <= hi, f"tissue fraction {tissue.mean():.2f} not in [{lo}, {hi}]"
    assert ink.mean() >= min_ink, f"ink fraction {ink.mean():.2f} < {min_ink}"
    assert not (tissue & ink).any(), "a pixel cannot be both tissue and ink"


def test_red_ink_pixels_are_not_tissue():
    rgb = np.asarray(Image.open(FIXTURES / "tcga-red-pen.png").convert("RGB")).astype(int)
    tissue, _ = detect_tissue(rgb.astype(np.uint8))
    pure_red = (rgb[..., 0] > 180) & (rgb[..., 1] < 60) & (rgb[..., 2] < 70)
    assert pure_red.sum() > 1000 and tissue[pure_red].mean() < 0.02


def test_tissue_mask_of_a_real_slide(wsi_dir):
    with open_slide(wsi_dir / "CMU-1-Small-Region.svs") as slide:
        mask = tissue_mask(slide)
        assert mask.mpp == pytest.approx(8.0, rel=0.05)
        assert (
            mask.mask.shape == (round(2967 * 0.499 / 8), round(2220 * 0.499 / 8)) or abs(mask.mask.shape[0] - 185) <= 1
        )
        assert 0.25 < mask.tissue_fraction < 0.75  # the biopsy strip on glass


def _grid_slide(tmp_path):
    return open_slide(write_big_pyramid(tmp_path / "grid.tif", side=4096, min_side=1024))  # mpp 0.25, 3 levels


def test_grid_level_size_and_determinism(tmp_path):
    with _grid_slide(tmp_path) as slide:
        mask = tissue_mask(slide)
        grid = patch_grid(slide, mask, patch_size=224, target_mpp=0.5)
        assert grid.size_level0 == 448 and grid.level == 1 and grid.read_size == 224
        assert len(grid) == grid.n_candidates == (4096 // 448) ** 2  # synthetic tissue covers the slide
        again = patch_grid(slide, mask, patch_size=224, target_mpp=0.5)
        np.testing.assert_array_equal(grid.xy_level0, again.xy_level0)
        # 1 µm/px asks for level 2 (4x); 0.3 µm/px must read level 0 and shrink 269 -> 224
        assert patch_grid(slide, mask, target_mpp=1.0).level == 2
        fine = patch_grid(slide, mask, target_mpp=0.3)
        assert fine.level == 0 and fine.read_size == 269


def test_grid_cap_is_spatially_even_and_seeded(tmp_path):
    with _grid_slide(tmp_path) as slide:
        mask = tissue_mask(slide)
        full = patch_grid(slide, mask, patch_size=64, target_mpp=0.25)  # 64 x 64 = 4096 candidates
        capped = patch_grid(slide, mask, patch_size=64, target_mpp=0.25, max_patches=256)
        assert len(capped) == 256 and capped.n_candidates == len(full) > 3500
        assert "256 kept" in capped.note
        # every quadrant keeps its share (not the first 256 in raster order)
        quadrant = (capped.xy_level0[:, 0] >= 2048) * 2 + (capped.xy_level0[:, 1] >= 2048)
        assert np.bincount(quadrant, minlength=4).min() >= 256 // 4 - 8
        other = patch_grid(slide, mask, patch_size=64, target_mpp=0.25, max_patches=256, seed=1)
        assert not np.array_equal(other.xy_level0, capped.xy_level0)
        assert np.array_equal(
            patch_grid(slide, mask, patch_size=64, target_mpp=0.25, max_patches=256, seed=1).xy_level0, other.xy_level0
        )


def test_grid_without_mpp_works_in_pixels_and_says_so(wsi_dir):
    with open_slide(wsi_dir / "tcga-cr-7395-01a-01-ts1.svs") as slide:
        grid = patch_grid(slide, tissue_mask(slide), patch_size=224, target_mpp=0.5)
        assert grid.target_mpp is None and grid.level == 0 and grid.size_level0 == 224
        assert "no microns-per-pixel" in grid.note and len(grid) > 10


def test_grid_rejects_bad_arguments(pyramid_tif):
    with open_slide(pyramid_tif) as slide:
        mask = tissue_mask(slide)
        for kwargs, match in [
            ({"patch_size": 2}, "patch_size"),
            ({"min_tissue": 1.5}, "min_tissue"),
            ({"target_mpp": -1}, "target_mpp"),
            ({"max_patches": 0}, "max_patches"),
        ]:
            with pytest.raises(ValueError, match=match):
                patch_grid(slide, mask, **kwargs)


def test_extraction_matches_read_region(tmp_path):
    with _grid_slide(tmp_path) as slide:
        grid = patch_grid(
            slide, tissue_mask(slide), patch_size=100, target_mpp=0.25
        )  # level 0, 100-px patches over 256-px tiles
        seen = np.zeros(len(grid), bool)
        for patches, index in extract_patches(slide, grid, batch_size=37):
            assert patches.shape[1:] == (100, 100, 3) and patches.dtype == np.uint8
            for patch, i in zip(patches[:3], index[:3]):
                np.testing.assert_array_equal(patch, slide.read_region(tuple(grid.xy_level0[i]), (100, 100), 0))
            seen[index] = True
        assert seen.all(), "every patch is yielded"


def test_extraction_decodes_each_stored_tile_once_per_pass(tmp_path):
    with _grid_slide(tmp_path) as slide:
        grid = patch_grid(slide, tissue_mask(slide), patch_size=100, target_mpp=0.25)
        touched = set()
        for x, y in grid.xy_level0:
            for r in range(int(y) // 256, (int(y) + 99) // 256 + 1):
                for c in range(int(x) // 256, (int(x) + 99) // 256 + 1):
                    touched.add((r, c))
        before = slide.tiles_decoded
        n = sum(len(i) for _, i in extract_patches(slide, grid, batch_size=50))
        assert n == len(grid)
        assert slide.tiles_decoded - before == len(touched), "each stored tile decoded exactly once"


def test_extraction_resizes_from_the_coarser_level(tmp_path):
    with _grid_slide(tmp_path) as slide:
        grid = patch_grid(slide, tissue_mask(slide), patch_size=224, target_mpp=0.5)
        patches, index = next(extract_patches(slide, grid, batch_size=4))
        x, y = grid.xy_level0[index[0]]
        np.testing.assert_array_equal(patches[0], slide.read_region((int(x), int(y)), (224, 224), level=1))


@pytest.mark.parametrize(
    "name", ["CMU-1-Small-Region.svs", "CMU-1-Small-Region.pyramid.generic.tif"]
)  # Aperio RGB JPEG + shared tables; YCbCr JPEG
def test_codec_scaled_tiles_match_the_box_averaged_full_decode(wsi_dir, name):
    with open_slide(wsi_dir / name) as slide:
        assert slide.can_read_scaled(0, 2)
        rows, cols = (-(-s // t) for s, t in zip(slide.level_shapes[0], slide.tile_shape(0)))
        for r, c in [(0, 0), (rows // 2, cols // 2), (rows - 1, cols - 1)]:  # the last one is cropped
            full = np.ascontiguousarray(slide.read_tile(0, r, c))
            half = slide.read_tile_scaled(0, r, c, 2)
            assert half.shape == (-(-full.shape[0] // 2), -(-full.shape[1] // 2), 3)
            boxed = np.asarray(Image.fromarray(full).reduce(2))
            assert np.abs(boxed.astype(int) - half).mean() < 3.0, "the scaled IDCT is a low-pass of the same pixels"


def test_codec_scaling_refused_when_its_colours_are_wrong(wsi_dir):
    with open_slide(wsi_dir / "CMU-1-Small-Region.svs") as slide:
        slide._reader.levels[0]._rgb_jpeg = False  # decode Aperio's RGB samples as if YCbCr: false colours
        assert not slide.can_read_scaled(0, 2), "the probe against a full decode must catch it"
        grid = patch_grid(slide, tissue_mask(slide), patch_size=224, target_mpp=0.98)  # level 0 read at ~2x
        assert grid.level == 0 and grid.read_size == 440
        patches, index = next(extract_patches(slide, grid, batch_size=4))  # falls back to decode + resize
        x, y = grid.xy_level0[index[0]]
        region = slide.read_region((int(x), int(y)), (grid.read_size, grid.read_size), 0)
        expected = np.asarray(Image.fromarray(region).resize((224, 224), Image.Resampling.BOX))
        np.testing.assert_array_equal(patches[0], expected)


def test_extraction_at_half_resolution_decodes_each_tile_once_at_half_size(wsi_dir):
    from napari_pathalign.tiling.extract import codec_scale

    # 0.499 µm/px, 240-px JPEG tiles, one stored level: at 0.98 µm/px (just under 2x, so the 2x
    # level derived from it is not used) patches read 440 px of level 0, decoded at 220, sized to 224
    with open_slide(wsi_dir / "CMU-1-Small-Region.svs") as slide:
        grid = patch_grid(slide, tissue_mask(slide), patch_size=224, target_mpp=0.98, min_tissue=0.1)
        assert (
            grid.level == 0
            and grid.read_size == 440
            and codec_scale(slide, grid.level, grid.read_size, 224) == 2
            and len(grid) >= 4
        )
        touched = {
            (r, c)
            for x, y in grid.xy_level0
            for r in range(y // 240, (y + 439) // 240 + 1)
            for c in range(x // 240, (x + 439) // 240 + 1)
        }
        before = slide.tiles_decoded
        out = {
            int(i): p for patches, index in extract_patches(slide, grid, batch_size=3) for p, i in zip(patches, index)
        }
        assert slide.tiles_decoded - before == len(touched), "each stored tile decoded exactly once"
        assert sorted(out) == list(range(len(grid)))
        ours, lanczos = [], []  # mean |difference| from a box-average resize, ours vs PIL's Lanczos
        for i, patch in out.items():
            x, y = (int(v) for v in grid.xy_level0[i])
            region = Image.fromarray(slide.read_region((x, y), (440, 440), 0))
            boxed = np.asarray(region.resize((224, 224), Image.Resampling.BOX)).astype(int)
            ours.append(np.abs(boxed - patch).mean())
            lanczos.append(np.abs(boxed - np.asarray(region.resize((224, 224), Image.Resampling.LANCZOS))).mean())
        # same pixels, another low-pass: no further from the box average than two standard resizers are apart
        assert np.mean(ours) < np.mean(lanczos) + 1.0 and max(ours) < 10
