"""The showcase slide `make demo` opens: a demo slide at a size a pathologist pans around in.

The same recipe as the demo data (``demo/data.py``: a tissue-shaped outline on glass, contiguous
tissue regions, tumour foci, tiles feathered into each other with no hard seam), at a larger grid,
from the *held-out* (test split) tiles of one source, so what the model shows on it is honest. It
is built once (about a minute) into the user's data folder and reused; its class map and truth lie
beside it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

SHOWCASE_GRID = {"pcam": (84, 112), "lung": (40, 54), "kather": (50, 66)}  # cells: about 8 x 6 mm of tissue
SHOWCASE_SEED = 18  # the layout: one slide, tumour foci taking about 16 % of the tissue (moderate)


GLASS_MARGIN = 6  # cells of glass around the section


def showcase_path(folder: Path, kind: str = "pcam") -> Path:
    return Path(folder) / f"showcase-{kind}.tif"


def _lab_stats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of a tile's tissue pixels in CIELAB."""
    from skimage.color import rgb2lab

    lab = rgb2lab(rgb).reshape(-1, 3)
    tissue = lab[lab[:, 0] < 88]  # not glass
    lab = tissue if len(tissue) > 50 else lab
    return lab.mean(0), lab.std(0) + 1e-3


def smooth_outline(rgb: np.ndarray, mask: np.ndarray, glass: float = 244.0) -> np.ndarray:
    """The section's edge drawn smooth, not along the cells' staircase: the cell mask is upsampled and
    blurred to a soft pixel mask, and the slide fades to glass outside it."""
    from scipy.ndimage import gaussian_filter, zoom

    fy, fx = rgb.shape[0] / mask.shape[0], rgb.shape[1] / mask.shape[1]
    soft = gaussian_filter(mask.astype(np.float32), 1.5)  # in cells: rounds the staircase into a curve
    soft = zoom(soft, (fy, fx), order=1)[: rgb.shape[0], : rgb.shape[1]]
    alpha = np.clip((soft - 0.55) / 0.15, 0, 1)[..., None]  # inside the cells only: a soft ramp at the edge
    out = rgb.astype(np.float32) * alpha + glass * (1 - alpha)
    return out.round().astype(np.uint8)


def mostly_tissue(source, rng: np.random.Generator, per_class: int = 600, max_glass: float = 0.3):
    """The source with, per class, up to ``per_class`` of its tiles that are at most ``max_glass`` glass: a
    section has no holes where a tile happened to lie on an empty patch of the original slide."""
    from PIL import Image

    kept = {}
    for cls, paths in source.tiles.items():
        order = rng.permutation(len(paths))[:per_class]
        good = []
        for i in order:
            rgb = np.asarray(Image.open(paths[int(i)]).convert("L"))
            if (rgb > 215).mean() <= max_glass:
                good.append(paths[int(i)])
        kept[cls] = good or list(paths)
    return replace(source, tiles=kept)


def stain_match(source, rng: np.random.Generator, sample: int = 200):
    """A tile transform that gives every tile the typical colour of the source (Reinhard: per-channel
    mean and spread in CIELAB matched to the median over ``sample`` tiles), so tiles of many patients
    read as one section, as a slide from one lab does. Glass stays glass."""
    from PIL import Image
    from skimage.color import lab2rgb, rgb2lab

    paths = [p for ps in source.tiles.values() for p in ps]
    picked = [paths[int(i)] for i in rng.choice(len(paths), size=min(sample, len(paths)), replace=False)]
    stats = [_lab_stats(np.asarray(Image.open(p).convert("RGB"))) for p in picked]
    target_mean = np.median([m for m, _ in stats], axis=0)
    target_std = np.median([s for _, s in stats], axis=0)

    def match(tile: np.ndarray) -> np.ndarray:
        lab = rgb2lab(tile)
        mean, std = _lab_stats(tile)
        glass = lab[..., 0] >= 88
        out = (lab - mean) / std * target_std + target_mean
        out[glass] = lab[glass]
        with warnings.catch_warnings():  # a few out-of-gamut pixels are clipped: expected, and harmless
            warnings.simplefilter("ignore", UserWarning)
            rgb = lab2rgb(out)
        return (rgb * 255).round().clip(0, 255).astype(np.uint8)

    return match


def make_showcase_slide(
    tiles: Path, folder: Path, kind: str = "pcam", seed: int = SHOWCASE_SEED, grid: tuple[int, int] | None = None
) -> Path:
    """Build (once) the showcase slide of ``kind`` ('pcam': lymph node, 'lung', 'kather': colon) from the
    test-split tiles under ``tiles``; returns its path. ``grid``: cells of the section (default
    SHOWCASE_GRID). Its class map and ground truth are written beside it."""
    from napari_pathalign.core.atomic import atomic_write_text
    from napari_pathalign.demo.data import layout_classes, render, tissue_outline, write_class_map
    from napari_pathalign.io.write import write_pyramid_tiff
    from napari_pathalign.train.tile_sources import find_sources

    out = showcase_path(folder, kind)
    if out.is_file() and out.with_suffix(".truth.json").is_file():
        return out
    sources = [s for s in find_sources(Path(tiles), 0) if s.kind == kind and s.split == "test"]
    if not sources:
        raise FileNotFoundError(
            f"no held-out {kind!r} tiles under {tiles}; the showcase slide needs ../shared/data/tiles"
        )
    rng = np.random.default_rng(seed)
    mask = np.pad(tissue_outline(grid or SHOWCASE_GRID[kind], rng), GLASS_MARGIN)  # glass all round the section
    cells = layout_classes(mask, kind, True, rng)
    tiles_rng = np.random.default_rng([seed, 1])
    src = mostly_tissue(sources[0], tiles_rng)
    rgb = smooth_outline(render(cells, src, rng, stain_match(src, tiles_rng)), mask)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_pyramid_tiff(out, rgb, src.mpp)
    write_class_map(out, cells, list(src.tiles), rgb.shape[0] // cells.shape[0], src.mpp, kind)
    tissue = cells[cells != ""]
    fractions = {c: round(float(np.mean(tissue == c)), 4) for c in sorted(set(tissue.tolist()))}
    truth = {"source": kind, "mpp": src.mpp, "size_px": list(rgb.shape[:2]), "fractions": fractions}
    atomic_write_text(out.with_suffix(".truth.json"), json.dumps(truth, indent=1) + "\n")
    return out
