"""Random 512 x 512 level-0 region reads per second: ours vs OpenSlide vs tiffslide, same file, one run.

Every reader gets the same seeded random positions, opened fresh (cold caches), and must return
a numpy array (OpenSlide's PIL image is converted with np.asarray, its cheapest path).

    python benchmarks/bench_read.py [SLIDE ...] [--reads 300] [--size 512]

Without arguments: CMU-1-Small-Region.svs from ../shared and, when present, the 100,000 x 80,000
pyramid written by benchmarks/make_big_pyramid.py.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = [
    ROOT.parent / "shared" / "data" / "wsi" / "CMU-1-Small-Region.svs",
    ROOT / "benchmarks" / "data" / "big-100000x80000.tif",
]


def positions(width: int, height: int, size: int, n: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    xs = rng.integers(0, max(1, width - size), n)
    ys = rng.integers(0, max(1, height - size), n)
    return list(zip(xs.tolist(), ys.tolist()))


def ours(path: Path):
    from napari_pathalign.io import open_slide

    slide = open_slide(path)
    return lambda xy, s: slide.read_region(xy, (s, s), 0), slide.close


def openslide_reader(path: Path):
    import openslide

    osr = openslide.OpenSlide(str(path))
    return lambda xy, s: np.asarray(osr.read_region(xy, 0, (s, s))), osr.close


def tiffslide_reader(path: Path):
    import tiffslide

    ts = tiffslide.TiffSlide(str(path))
    return lambda xy, s: ts.read_region(xy, 0, (s, s), as_array=True), ts.close


READERS = {"ours": ours, "openslide": openslide_reader, "tiffslide": tiffslide_reader}


def bench(path: Path, reads: int, size: int) -> dict[str, float]:
    import openslide

    width, height = openslide.OpenSlide(str(path)).dimensions
    where = positions(width, height, size, reads)
    rates = {}
    for name, make in READERS.items():
        read, close = make(path)
        read(where[0], size)  # warm-up: opens codecs, builds thread pools
        t0 = time.perf_counter()
        for xy in where:
            read(xy, size)
        rates[name] = reads / (time.perf_counter() - t0)
        close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slides", nargs="*", type=Path)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    slides = args.slides or [p for p in DEFAULTS if p.exists()]
    print(f"random {args.size}x{args.size} level-0 reads, {args.reads} per reader, {os.cpu_count()} CPUs")
    print(f"{'slide':<34} {'ours/s':>8} {'openslide/s':>12} {'tiffslide/s':>12} {'ours/openslide':>15}")
    for path in slides:
        r = bench(path, args.reads, args.size)
        print(
            (
                f"{path.name:<34} {r['ours']:>8.1f} {r['openslide']:>12.1f} "
                f"{r['tiffslide']:>12.1f} {r['ours'] / r['openslide']:>14.2f}x"
            )
        )


if __name__ == "__main__":
    main()
