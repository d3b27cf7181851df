"""A large TIFF without a pyramid: our lazy reader vs reading level 0 eagerly (napari's built-in way).

Writes (once) a 40,000 x 30,000 single-level JPEG tiled TIFF of real tissue tiles into
benchmarks/data/, then prints in one run: open time, first overview (the lazily built pyramid
decodes every stored tile once), a repeated overview (cached), a full-resolution pan, and the
eager tifffile read of level 0 with its memory.

    python benchmarks/bench_flat.py [--no-eager]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
FLAT = ROOT / "benchmarks" / "data" / "flat-40000x30000.tif"


def write_flat(path: Path, h: int = 30000, w: int = 40000) -> None:
    from make_big_pyramid import tissue_tiles

    tiles = tissue_tiles(256)
    n = -(-h // 256) * -(-w // 256)
    gen = (tiles[(i * 7919) % len(tiles)] for i in range(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tifffile.imwrite(
        tmp,
        gen,
        shape=(h, w, 3),
        dtype=np.uint8,
        tile=(256, 256),
        compression="jpeg",
        photometric="rgb",
        resolution=(4e4, 4e4),
        resolutionunit="CENTIMETER",
        bigtiff=True,
        maxworkers=2,
    )
    tmp.replace(path)


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:52} {time.perf_counter() - t0:8.2f} s")
    return out


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-eager", action="store_true", help="skip the eager read (needs ~3.6 GB)")
    args = parser.parse_args()
    if not FLAT.exists():
        timed("writing the flat TIFF (once)", lambda: write_flat(FLAT))
    from napari_pathalign.io import open_slide

    slide = timed("ours: open", lambda: open_slide(FLAT))
    print(f"  levels: {', '.join(f'{w}x{h}' for h, w in slide.level_shapes)} (1 stored)")
    timed("ours: first overview (every tile decoded once)", lambda: np.asarray(slide.levels[-1]))
    timed("ours: overview again", lambda: np.asarray(slide.levels[-1]))
    timed("ours: pan at level 0, 1600 x 1000 view", lambda: np.asarray(slide.levels[0][10000:11000, 20000:21600]))
    timed("ours: zoom to level 3, 1600 x 1000 view", lambda: np.asarray(slide.levels[3][1000:2000, 1000:2600]))
    if not args.no_eager:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        timed("eager: tifffile.imread of level 0 (napari built-in)", lambda: tifffile.imread(FLAT))
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20
        print(f"  eager peak memory grew by {grew:.1f} GB")


if __name__ == "__main__":
    main()
