"""Reading and writing 100,000 QuPath polygons (a cell-detection export): the time `read_annotations` takes.

    python benchmarks/bench_annotations.py [--count 100000] [--vertices 24]

Writes a QuPath-style FeatureCollection into a temporary folder, then prints the seconds to read it,
to write it back, and the file's size (the acceptance figure: < 5 s to read 100,000 polygons); then reads
it again in a thread, as the Annotations dock does, and prints the longest pause another thread saw
(what the window would feel).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from napari_pathalign.io import read_annotations, write_annotations


def qupath_cells(count: int, vertices: int, seed: int = 0) -> dict:
    """``count`` closed polygons of ``vertices`` corners (cells about 10 px across), as QuPath exports them."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    centres = rng.uniform(20, 39_980, (count, 2))  # (count, 2) level-0 (x, y)
    radii = rng.uniform(4, 8, (count, 1)) * (1 + 0.2 * rng.standard_normal((count, vertices)))  # (count, V)
    features = []
    for k in range(count):
        xy = np.round(centres[k] + radii[k, :, None] * np.stack([np.cos(angles), np.sin(angles)], 1), 2)  # (V, 2)
        ring = xy.tolist() + [xy[0].tolist()]
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.UUID(int=k)),
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": "Tumor" if k % 3 else "Stroma", "color": [200, 0, 0]},
                    "isLocked": False,
                    "measurements": {"Nucleus: Area": float(np.pi * radii[k].mean() ** 2)},
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--vertices", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cells.geojson"
        path.write_text(json.dumps(qupath_cells(args.count, args.vertices)))
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        anns = read_annotations(path)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_annotations(anns, Path(tmp) / "again.geojson")
        write_s = time.perf_counter() - t0
        reader = threading.Thread(target=read_annotations, args=(path,))
        ticks = [time.perf_counter()]
        reader.start()
        while reader.is_alive():
            time.sleep(0.002)
            ticks.append(time.perf_counter())
        pause_ms = np.diff(ticks).max() * 1000
    print(
        f"read_annotations: {len(anns):,} polygons of {args.vertices} vertices ({size_mb:.0f} MB) in {read_s:.2f} s "
        f"(target < 5 s); write_annotations: {write_s:.2f} s; read in a thread: the other thread's longest "
        f"pause {pause_ms:.0f} ms"
    )


if __name__ == "__main__":
    main()
