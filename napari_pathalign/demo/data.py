"""Demo slides assembled from real labelled tiles, with ground truth and multi-part reports.

Sources (found under ``--tiles``):

- PatchCamelyon layout: ``0/`` and ``1/`` folders of 96-px tiles at about 0.97 µm/px (lymph node;
  1 = metastatic tumour). A ``train/`` + ``valid/`` pair becomes the train and test splits.
- Kather 2016 layout: ``01_TUMOR/`` ... ``08_EMPTY/`` of 150-px tiles at about 0.495 µm/px
  (colorectal). Split by source image: the file name up to ``.tif_Row``, without its leading hex
  id, names the image, and every tile of one image lands in the same split.
- LC25000 lung layout: ``adenocarcinoma/``, ``squamous_cell_carcinoma/``, ``benign/`` and
  ``tiles.csv``; split by source-tile cluster (its rotated copies never straddle the split). A lung
  slide holds adenocarcinoma, squamous cell carcinoma or both within benign lung, or none.

Each slide is a grid of tile cells laid out like tissue on glass: an irregular tissue outline on
white, contiguous regions per tissue class, tumour foci of varied size, some slides with no
tumour. Tiles overlap their neighbours by a quarter of their size and are feathered into them, so
there are no hard seams and the tissue fades into the glass at its edge. Slides are grouped into
cases of 1-3 parts; each case gets one report (lettered parts when
there are several). Everything is deterministic for a seed.

Ground truth per split: ``slides.csv`` (class fractions per slide), ``reports.jsonl`` (one report
per case) and, beside each slide, its class map ``slides/<name>.classes.json`` for scoring where a
heatmap lights up (read it with ``napari_pathalign.eval.class_maps.read_class_map``)::

    {"cell_size_level0": 96, "mpp": 0.972, "source": "pcam", "classes": ["normal", "tumour"],
     "grid": [[-1, -1, 0, ...], ...]}

``grid`` has one row per cell row; each value indexes ``classes`` (-1: glass). Cell (r, c) covers
level-0 pixels ``[c * size, (c + 1) * size) x [r * size, (r + 1) * size)``. ``classes`` lists every
class of the tile source in a fixed order (PCam: normal, tumour; Kather: ``KATHER_CLASSES``), so
indices mean the same on all slides of one source.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write_text
from napari_pathalign.demo.report_writer import load_writer, write_report
from napari_pathalign.eval.class_maps import GLASS, class_map_path
from napari_pathalign.eval.truth import PartTruth, organ_of
from napari_pathalign.train.tile_sources import (  # noqa: F401 - re-exported
    KATHER_CLASSES,
    TileSource,
    find_sources,
    keep_part,
)

FEATHER = 4  # tiles overlap their neighbours by 1/FEATHER of their size, blended linearly (no hard seams)


def _smooth_field(shape, rng, sigma) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.normal(size=shape), sigma, mode="reflect")
    return (f - f.mean()) / (f.std() + 1e-9)


def tissue_outline(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An irregular blob (bool, cells) covering about half the glass, one connected piece."""
    from scipy.ndimage import binary_fill_holes, label

    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    ellipse = ((yy - rows / 2) / (rows * 0.42)) ** 2 + ((xx - cols / 2) / (cols * 0.42)) ** 2
    field = _smooth_field(shape, rng, sigma=max(rows, cols) / 8) * 0.45 - ellipse
    mask = field > np.quantile(field, 1 - rng.uniform(0.45, 0.65))
    lab, n = label(mask)
    if n > 1:
        mask = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    return binary_fill_holes(mask)


def layout_classes(mask: np.ndarray, source: str, tumour: bool, rng: np.random.Generator) -> np.ndarray:
    """Class name per cell ('' outside tissue): contiguous regions, tumour as foci of varied size."""
    rows, cols = mask.shape
    cells = np.full(mask.shape, "", dtype=object)
    if source == "pcam":
        cells[mask] = "normal"
        tumour_class, n_foci = "tumour", int(rng.integers(1, 4))
    elif source == "lung":
        cells[mask] = "benign"
        kinds = [["adenocarcinoma"], ["squamous_cell_carcinoma"], ["adenocarcinoma", "squamous_cell_carcinoma"]]
        tumour_class = kinds[int(rng.choice(3, p=[0.4, 0.4, 0.2]))]
        n_foci = max(len(tumour_class), int(rng.integers(1, 4)))
    else:
        others = [c for c in KATHER_CLASSES if c != "TUMOR"]
        chosen = list(rng.choice(others, size=int(rng.integers(2, 4)), replace=False))
        fields = np.stack(
            [_smooth_field(mask.shape, rng, sigma=max(rows, cols) / 6) + rng.normal(0, 0.3) for _ in chosen]
        )
        region = np.argmax(fields, axis=0)
        cells[mask] = np.array(chosen, dtype=object)[region[mask]]
        tumour_class, n_foci = "TUMOR", int(rng.integers(1, 3))
    if tumour:
        inside = np.argwhere(mask)
        yy, xx = np.mgrid[0:rows, 0:cols]
        target = rng.choice([0.05, 0.2, 0.45]) * mask.sum()  # small / moderate / extensive foci
        for k in range(n_foci):
            cy, cx = inside[int(rng.integers(len(inside)))]
            radius = np.sqrt(target / n_foci / np.pi) * rng.uniform(0.7, 1.3)
            wobble = _smooth_field(mask.shape, rng, sigma=2) * 0.35
            blob = (np.hypot(yy - cy, xx - cx) / max(radius, 0.8) + wobble) < 1
            kind = tumour_class if isinstance(tumour_class, str) else tumour_class[k % len(tumour_class)]
            cells[blob & mask] = kind
    return cells


def _feather(size: int, overlap: int) -> np.ndarray:
    """(size, size) blending weight of a tile: 1 inside, a linear ramp over ``overlap`` px at each edge."""
    ramp = np.clip((np.arange(size) + 0.5) / max(overlap, 1), 0, 1)
    edge = np.minimum(ramp, ramp[::-1])
    return np.minimum.outer(edge, edge).astype(np.float32)


def render(cells: np.ndarray, source: TileSource, rng: np.random.Generator, transform=None) -> np.ndarray:
    """Level-0 RGB: a real tile of the cell's class in each tissue cell (random turns and flips), glass
    elsewhere. Tiles of T px sit at a stride of S = T - T/FEATHER px and are feathered into their
    neighbours, so cell (r, c) of the class map covers ``[c*S, (c+1)*S) x [r*S, (r+1)*S)``.
    ``transform``: tile (T, T, 3) uint8 -> the same, applied to each tile read (the showcase's stain match)."""
    from PIL import Image

    tiles = {c: source.tiles[c] for c in set(cells[cells != ""].tolist())}
    first = np.asarray(Image.open(next(iter(tiles.values()))[0]).convert("RGB"))
    size = first.shape[0]
    overlap = size // FEATHER
    stride, pad = size - overlap, overlap // 2
    rows, cols = cells.shape
    height, width = rows * stride, cols * stride
    acc = np.zeros((height + 2 * pad + overlap, width + 2 * pad + overlap, 3), np.float32)
    weight = np.zeros(acc.shape[:2], np.float32)
    window = _feather(size, overlap)
    for (r, c), cls in np.ndenumerate(cells):
        if cls:
            paths = tiles[cls]
            tile = np.asarray(Image.open(paths[int(rng.integers(len(paths)))]).convert("RGB"))
            if tile.shape[:2] != (size, size):
                tile = np.asarray(Image.fromarray(tile).resize((size, size), Image.BILINEAR))
            if transform is not None:
                tile = transform(tile)
            tile = np.rot90(tile, int(rng.integers(4)))
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
        else:
            tile = rng.normal(244, 2.5, size=(size, size, 3)).clip(0, 255)
        y, x = r * stride, c * stride  # in the padded canvas: the tile's centre S-cell starts at + pad
        acc[y : y + size, x : x + size] += tile * window[..., None]
        weight[y : y + size, x : x + size] += window
    out = (
        acc[pad : pad + height, pad : pad + width]
        / np.maximum(weight[pad : pad + height, pad : pad + width], 1e-6)[..., None]
    )
    return out.round().clip(0, 255).astype(np.uint8)


def write_class_map(
    slide_path: Path, cells: np.ndarray, classes: list[str], cell_size_level0: int, mpp: float, source: str
) -> Path:
    """Write the slide's cell classes beside it as ``<stem>.classes.json`` (format: module docstring)."""
    index = {c: i for i, c in enumerate(classes)}
    grid = [[index[c] if c else GLASS for c in row] for row in cells.tolist()]
    doc = {
        "cell_size_level0": int(cell_size_level0),
        "mpp": mpp,
        "source": source,
        "classes": list(classes),
        "grid": grid,
    }
    path = class_map_path(slide_path)
    # one cell row per line: small, and a person can see the layout in the file
    body = ",\n".join("  " + json.dumps(row) for row in grid)
    head = json.dumps({k: v for k, v in doc.items() if k != "grid"})[:-1]
    atomic_write_text(path, f'{head}, "grid": [\n{body}\n]}}\n')
    return path


def make_demo_data(
    tiles: Path,
    out: Path,
    slides: int = 60,
    seed: int = 0,
    grid: tuple[int, int] = (16, 22),
    no_tumour_fraction: float = 0.3,
    progress: bool = True,
    splits: tuple[str, ...] = ("train", "test"),
    test_slides: int | None = None,
    kinds: tuple[str, ...] | None = None,
    split_seed: int = 0,
    part: tuple[int, int] | None = None,
) -> dict:
    """Write demo slides, slides.csv and reports.jsonl per split under ``out``; returns counts.

    ``slides`` training slides; the test split gets ``test_slides`` (default a third as many).
    ``kinds`` keeps only those tile sources ('pcam', 'kather', 'lung'; default all found).
    ``seed`` draws the slides; ``split_seed`` says which source images (Kather) and clusters (LC25000) are
    held out, and is the shipped model's (0) unless a recipe changes it: another ``seed`` gives new slides
    from the same split, so a second test set never holds a training tile. ``part`` (k, n): only the k-th of
    n parts of each split's source units (``tile_sources.keep_part``): slides of part 0 and part 1 share no
    Kather source image, LC25000 cluster or PCam tile (a measurement fitted on one, calibrated on the other).
    """
    from tqdm import tqdm

    from napari_pathalign.io.write import write_pyramid_tiff

    out = Path(out)
    writer = load_writer()
    sources = [s for s in find_sources(tiles, split_seed) if kinds is None or s.kind in kinds]
    if part is not None:
        sources = [keep_part(s, part) if s.split in splits else s for s in sources]
    counts = {}
    for split in splits:
        here = [s for s in sources if s.split == split]
        if not here:
            continue
        n = slides if split == "train" else (test_slides if test_slides is not None else max(len(here), slides // 3))
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        folder = out / split
        (folder / "slides").mkdir(parents=True, exist_ok=True)
        truth_rows, report_rows, k = [], [], 0
        bar = tqdm(total=n, desc=f"demo slides ({split})", unit="slide", disable=not progress)
        case = 0
        while k < n:
            case += 1
            src = here[int(rng.integers(len(here)))]
            n_parts = min(int(rng.choice([1, 1, 2, 3])), n - k)
            parts = []
            for p in range(n_parts):
                label = chr(ord("A") + p)
                tumour = rng.random() >= no_tumour_fraction
                mask = tissue_outline(grid, rng)
                cells = layout_classes(mask, src.kind, tumour, rng)
                tissue = cells[cells != ""]
                fractions = {c: float(np.mean(tissue == c)) for c in sorted(set(tissue.tolist()))}
                organ = organ_of(PartTruth(src.kind, fractions, 0.0), writer.ontology)
                tumour_labels = {c.label for c in organ.tumour_classes}
                truth = PartTruth(src.kind, fractions, sum(f for c, f in fractions.items() if c in tumour_labels))
                name = f"{split}-{src.kind}-{case:03d}{label}"
                rgb = render(cells, src, rng)
                path = write_pyramid_tiff(folder / "slides" / f"{name}.tif", rgb, src.mpp)
                # the cell size from the rendered image, not from a tile read here: the random
                # stream (and so every slide of a seed) stays as it was before class maps
                write_class_map(path, cells, list(src.tiles), rgb.shape[0] // cells.shape[0], src.mpp, src.kind)
                parts.append((label, truth, path))
                truth_rows.append(
                    {
                        "slide": f"slides/{path.name}",
                        "case": f"{split}-{case:03d}",
                        "part": label if n_parts > 1 else "",
                        "source": src.kind,
                        "mpp": src.mpp,
                        "tumour_present": int(truth.tumour_fraction > 0),
                        "tumour_fraction": round(truth.tumour_fraction, 4),
                        "tumour_bucket": writer.ontology.bucket(truth.tumour_fraction) or "none",
                        "dominant": max(fractions, key=fractions.get),
                        "fractions": json.dumps({c: round(f, 4) for c, f in fractions.items()}),
                    }
                )
                k += 1
                bar.update()
            report = write_report([(lab, t) for lab, t, _ in parts], rng, writer)
            for lab, _, path in parts:
                report_rows.append(
                    {
                        "slide": f"slides/{path.name}",
                        "part": lab if n_parts > 1 else "",
                        "report": report,
                        "case": f"{split}-{case:03d}",
                    }
                )
        bar.close()
        with open(folder / "slides.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(truth_rows[0]))
            w.writeheader()
            w.writerows(truth_rows)
        atomic_write_text((folder / "reports.jsonl"), "".join(json.dumps(r) + "\n" for r in report_rows))
        counts[split] = k
    return counts
