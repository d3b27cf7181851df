"""Patch extraction speed: ours vs the decode limit vs per-patch OpenSlide, same file, one run.

10,240 patches of 224 px at 0.5 µm/px from the 100,000 x 80,000 pyramid (make_big_pyramid.py):
- ours: ``extract_patches`` over the whole grid (tile-aligned, threaded, resized to 224);
- decode limit: decoding exactly the stored tiles those patches need, once each, with imagecodecs
  in a thread pool of the same size (no assembly, no resize);
- OpenSlide: ``read_region`` per patch + the same resize, on ``--openslide-patches`` of them
  (extrapolated to the full grid; the rate is what matters).

    python benchmarks/bench_extract.py [SLIDE] [--patches 10240] [--openslide-patches 2000]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "benchmarks" / "data" / "big-100000x80000.tif"


def main() -> None:
    import imagecodecs
    import openslide
    import tifffile

    from napari_pathalign.io import open_slide
    from napari_pathalign.tiling.extract import _resize, extract_patches
    from napari_pathalign.tiling.grid import patch_grid
    from napari_pathalign.tiling.tissue import tissue_mask

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slide", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--patches", type=int, default=10240)
    parser.add_argument("--openslide-patches", type=int, default=2000)
    args = parser.parse_args()
    if not args.slide.exists():
        raise SystemExit(f"{args.slide} not found: run benchmarks/make_big_pyramid.py first")

    slide = open_slide(args.slide)
    t0 = time.perf_counter()
    grid = patch_grid(slide, tissue_mask(slide), patch_size=224, target_mpp=0.5, max_patches=args.patches)
    t_grid = time.perf_counter() - t0
    print(f"{args.slide.name}: {len(grid)} patches of 224 px at 0.5 µm/px (read {grid.read_size} px at level {grid.level}); mask + grid {t_grid:.1f} s; {os.cpu_count()} CPUs")

    t0 = time.perf_counter()
    n = sum(len(i) for _, i in extract_patches(slide, grid, batch_size=64))
    t_ours = time.perf_counter() - t0
    assert n == len(grid)

    # the decode limit: the same tiles, decoded once each, nothing else
    th, tw = slide.tile_shape(grid.level)
    ds = slide.downsamples[grid.level]
    tiles = set()
    for x, y in np.round(grid.xy_level0 / ds).astype(int):
        for r in range(y // th, (y + grid.read_size - 1) // th + 1):
            for c in range(x // tw, (x + grid.read_size - 1) // tw + 1):
                tiles.add((r, c))
    page = tifffile.TiffFile(args.slide).series[0].levels[grid.level].keyframe
    cols = page.chunked[1]
    fd = os.open(args.slide, os.O_RDONLY)

    def decode(rc):
        i = rc[0] * cols + rc[1]
        return imagecodecs.jpeg8_decode(os.pread(fd, page.databytecounts[i], page.dataoffsets[i]), tables=page.jpegtables)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for _ in pool.map(decode, sorted(tiles), chunksize=16):
            pass
    t_limit = time.perf_counter() - t0

    osr = openslide.OpenSlide(str(args.slide))
    m = min(args.openslide_patches, len(grid))
    t0 = time.perf_counter()
    for x, y in grid.xy_level0[:m]:
        region = np.asarray(osr.read_region((int(x), int(y)), grid.level, (grid.read_size, grid.read_size)))[..., :3]
        _resize(np.ascontiguousarray(region), 224)
    t_os = (time.perf_counter() - t0) * len(grid) / m

    print(f"{'':28} {'seconds':>8} {'patches/s':>10}")
    for name, t in [("ours (extract_patches)", t_ours), (f"decode limit ({len(tiles)} tiles)", t_limit), (f"OpenSlide per patch (x{len(grid) / m:.1f})", t_os)]:
        print(f"{name:28} {t:8.2f} {len(grid) / t:10.0f}")
    print(f"ours / decode limit: {t_ours / t_limit:.2f}x the time (goal <= 1.25x)")
    print(f"ours vs OpenSlide:   {t_os / t_ours:.2f}x faster (goal >= 5x)")


if __name__ == "__main__":
    main()
