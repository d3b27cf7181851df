"""A slide over DICOMweb against the same slide from disk: random 512x512 region reads, and the first view.

Starts a real Orthanc (Debian: orthanc, orthanc-dicomweb) on localhost, stores the CMU-1 DICOM slide
on it, then times with the same reader both ways:

- open: ``open_slide`` of the folder and of the ``dicomweb+http://`` address (metadata only);
- random reads: N 512x512 regions at random level-0 positions, cold (a fresh slide, nothing cached)
  and warm (the same regions again: the DICOMweb frames come from the reader's LRU);
- first view: the thumbnail (what napari shows first), cold and warm.

    python -m benchmarks.bench_dicomweb [--regions 50] [--seed 0]     # from the repository root, ~10 s

Localhost has no network latency: over a hospital network each cold frame costs at least one round trip
more, which the parallel fetch (``DicomWebOptions.workers``) hides in part.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_pathalign.io import open_slide
from tests.orthanc import Orthanc, slide_url

WSI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wsi"


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(source: str | Path, corners: list[tuple[int, int]]) -> dict:
    out = {}
    out["open_s"] = timed(lambda: open_slide(source).close())
    with open_slide(source) as slide:
        out["cold_reads_s"] = timed(lambda: [slide.read_region(xy, (512, 512)) for xy in corners])
        out["warm_reads_s"] = timed(lambda: [slide.read_region(xy, (512, 512)) for xy in corners])
    with open_slide(source) as slide:
        out["first_view_cold_s"] = timed(lambda: slide.thumbnail(1024))
        out["first_view_warm_s"] = timed(lambda: slide.thumbnail(1024))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    local = WSI / "CMU-1-Small-Region-dicom"
    with tempfile.TemporaryDirectory() as folder, Orthanc(Path(folder)) as server:
        server.upload(*sorted(local.glob("*.dcm")))
        url = slide_url(server, WSI, "cmu-1")
        with open_slide(local) as slide:
            h, w = slide.shape_level0
        rng = np.random.default_rng(args.seed)
        corners = [(int(rng.integers(0, w - 512)), int(rng.integers(0, h - 512))) for _ in range(args.regions)]
        measure(local, corners[:2])  # imports and page cache: not part of either figure
        disk, web = measure(local, corners), measure(url, corners)
    print(f"CMU-1-Small-Region (2220x2967, 240-px JPEG frames), {args.regions} random 512x512 regions at level 0")
    names = {
        "open_s": "open (ms)",
        "cold_reads_s": "cold read (ms/region)",
        "warm_reads_s": "warm read (ms/region)",
        "first_view_cold_s": "first view, cold (ms)",
        "first_view_warm_s": "first view, warm (ms)",
    }
    print(f"{'':24s}{'file':>9s}{'DICOMweb':>10s}{'ratio':>8s}")
    for key, name in names.items():
        per = args.regions if "reads" in key else 1
        a, b = disk[key] / per * 1000, web[key] / per * 1000
        print(f"{name:24s}{a:9.1f}{b:10.1f}{b / a:7.1f}x")


if __name__ == "__main__":
    main()
