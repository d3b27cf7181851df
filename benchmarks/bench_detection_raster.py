"""Drawing one screen (1600 x 1000 pixels) of 100,000 detections at each pyramid level, the work napari's GUI
thread does when a view of the "[detections]" layer changes (``tiling/detection_raster.py``).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_detection_raster.py

Two layouts of the same 100,000 cells (20 px across, 24 vertices each) on a 40,100 px slide: spread over the
whole slide (a cell per 130 x 130 px), and packed into 6,000 x 6,000 px (a cell per 19 x 19 px, tissue as dense
as tumour), viewed at its corner. Prints the median of 5 draws, in ms.
"""

from __future__ import annotations

import time

import numpy as np

from napari_pathalign.tiling.detection_raster import DetectionRaster


def cells(n: int, extent: float, rng) -> tuple[np.ndarray, np.ndarray]:
    angle = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    centre = rng.uniform(50, extent, (n, 2))
    xy = (centre[:, None, :] + 10 * np.stack([np.cos(angle), np.sin(angle)], 1)).reshape(-1, 2)
    return xy, np.arange(n + 1) * 24


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'layout':<8} {'build (ms)':>10}  " + "  ".join(f"level {k:>2}" for k in range(7)))
    for label, extent in (("spread", 40_000), ("packed", 6_000)):
        xy, starts = cells(100_000, extent, rng)
        t = time.perf_counter()
        raster = DetectionRaster(xy, starts, np.tile([200, 0, 0, 255], (100_000, 1)), 40_100, 40_100)
        build = (time.perf_counter() - t) * 1000
        row = []
        for level, array in enumerate(raster.pyramid()):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                array[0:1000, 0:1600]
                times.append((time.perf_counter() - t) * 1000)
            row.append(f"{np.median(times):8.1f}")
        print(f"{label:<8} {build:>10.0f}  " + "  ".join(row))


if __name__ == "__main__":
    main()
