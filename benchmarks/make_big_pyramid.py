"""Write a large JPEG tiled-TIFF pyramid (default 100,000 x 80,000) for the read benchmarks.

Tiles are real tissue from CMU-1-Small-Region (cycled), so JPEG sizes and decode costs are those
of a real scan. Levels at 4x steps, 256-px tiles, mpp 0.25, like a 40x scanner writes. The file
(~1 GB) goes to benchmarks/data/, which git ignores.

    python benchmarks/make_big_pyramid.py [--width 100000 --height 80000] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "wsi" / "CMU-1-Small-Region.svs"


def tissue_tiles(tile: int) -> list[np.ndarray]:
    img = tifffile.imread(SOURCE)  # 2967 x 2220 real H&E
    return [
        img[y : y + tile, x : x + tile]
        for y in range(0, img.shape[0] - tile, tile)
        for x in range(0, img.shape[1] - tile, tile)
    ]


def write(out: Path, width: int, height: int, tile: int = 256, step: int = 4) -> Path:
    tiles = tissue_tiles(tile)
    shapes = [(height, width)]
    while max(shapes[-1]) // step >= 1000:
        shapes.append((shapes[-1][0] // step, shapes[-1][1] // step))

    def tile_iter(h: int, w: int):
        n = -(-h // tile) * -(-w // tile)
        for i in range(n):
            if i % 5000 == 0 or i == n - 1:
                print(f"\r  {i + 1}/{n} tiles", end="\n" if i == n - 1 else "", file=sys.stderr, flush=True)
            yield tiles[(i * 7919) % len(tiles)]

    opts = dict(
        tile=(tile, tile),
        compression="jpeg",
        compressionargs={"level": 90},
        photometric="rgb",
        dtype=np.uint8,
        maxworkers=2,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for k, (h, w) in enumerate(shapes):
            print(f"level {k}: {w} x {h}", file=sys.stderr)
            extra = (
                dict(subifds=len(shapes) - 1, resolution=(4e4, 4e4), resolutionunit="CENTIMETER")
                if k == 0
                else dict(subfiletype=1)
            )
            tw.write(tile_iter(h, w), shape=(h, w, 3), **extra, **opts)
    tmp.replace(out)  # never leave a half-written file under the final name
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=100_000)
    parser.add_argument("--height", type=int, default=80_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "data" / "big-100000x80000.tif")
    args = parser.parse_args()
    t0 = time.perf_counter()
    path = write(args.out, args.width, args.height)
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
