"""A slide over DICOMweb against the same slide from disk: random 512x512 region reads, and the first view.

Starts a real Orthanc (Debian: orthanc, orthanc-dicomweb) on localhost, stores the CMU-1 DICOM slide
on it, then times with the same reader both ways:

- open: ``open_slide`` of the folder and of the ``dicomweb+http://`` address (metadata only);
- random reads: N 512x512 regions at random level-0 positions, cold (a fresh slide, nothing cached)
  and warm (the same regions again: the DICOMweb frames come from the reader's LRU);
- first view: the thumbnail (what napari shows first), cold and warm;
- panning in napari: CMU-1 with its pyramid stored (wsidicom adds levels 1-4, ~1 s), so that the first view
  reads a coarse level and panning fetches level-0 frames as a large slide does. It is added to a real
  viewer as the "Slides from PACS" dock adds it, and the camera, at full resolution, sweeps the whole slide
  (half a frame every 30 ms, a steady drag), cold (no level-0 frame fetched yet) and warm (the same sweep
  again). A 5-ms QTimer in the GUI thread records its ticks: the longest gap between two is the longest
  the window froze (goal: under 100 ms).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m benchmarks.bench_dicomweb [--regions 50]
        [--seed 0] [--sweeps 3] [--no-viewer]   # from the repository root, ~40 s; --no-viewer: no panning

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
from tests.orthanc import Orthanc, series_url, slide_url

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


STEP_MS = 30  # one camera move per this: a steady drag
TICK_MS = 5  # the GUI thread's timer whose gaps are the stalls


def sweep(shape_level0: tuple[int, int], view: tuple[int, int], step: int) -> list[tuple[int, int]]:
    """Camera centres (y, x) in level-0 px that sweep a view of (h, w) px over the whole slide, row by row."""
    (h0, w0), (vh, vw) = shape_level0, view
    ys = list(range(vh // 2, max(vh // 2, h0 - vh // 2) + 1, max(1, int(vh * 0.8))))
    xs = list(range(vw // 2, max(vw // 2, w0 - vw // 2) + 1, step))
    return [(y, x) for k, y in enumerate(ys) for x in (xs if k % 2 == 0 else xs[::-1])]


def with_pyramid(folder: Path, out: Path) -> Path:
    """A copy of a one-level DICOM slide with its lower levels stored (JPEG, by wsidicom), as scanners write them."""
    import wsidicom

    out.mkdir()
    with wsidicom.WsiDicom.open(folder) as wsi:
        wsi.save(out, add_missing_levels=True, include_labels=False, include_overviews=False)
    return out


def pan_stalls(viewer, source: str | Path) -> dict:
    """Longest GUI-thread gaps (s) while the camera sweeps the slide at full resolution, cold then warm."""
    from qtpy.QtCore import QEventLoop, Qt, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_pathalign._napari.layers import slide_layer_data

    slide = open_slide(source)
    data, kwargs, _ = slide_layer_data(slide)[0]  # as the "Slides from PACS" dock adds it
    layer = viewer.add_image(data, **kwargs)
    for _ in range(20):  # the first (overview) view: part of opening, not of panning
        QApplication.processEvents()
        time.sleep(0.02)
    canvas = viewer.window._qt_viewer.canvas.size  # (h, w) screen px; one screen px = one level-0 px below
    mpp = slide.mpp or 1.0
    path = sweep(slide.shape_level0, (int(canvas[0]), int(canvas[1])), slide.tile_size[1] // 2)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9 moved it
    camera.zoom = 1.0 / mpp  # full resolution: level 0
    out = {}
    for name in ("cold", "warm"):
        camera.center = (path[0][0] * mpp, path[0][1] * mpp)
        QApplication.processEvents()
        if name == "cold":
            out["frames_at_start"] = slide.tiles_decoded
        ticks, moves, loop = [time.perf_counter()], iter(path), QEventLoop()
        tick, stepper = QTimer(), QTimer()
        tick.setTimerType(Qt.TimerType.PreciseTimer)
        tick.timeout.connect(lambda: ticks.append(time.perf_counter()))

        def step(moves=moves, loop=loop):
            centre = next(moves, None)
            if centre is None:
                loop.quit()
            else:
                camera.center = (centre[0] * mpp, centre[1] * mpp)

        stepper.timeout.connect(step)
        tick.start(TICK_MS)
        stepper.start(STEP_MS)
        loop.exec()
        tick.stop()
        stepper.stop()
        gaps = np.diff(ticks)
        out[f"pan_{name}_max_s"], out[f"pan_{name}_p99_s"] = float(gaps.max()), float(np.percentile(gaps, 99))
        out[f"pan_{name}_over"] = int((gaps > 0.1).sum())
    out["steps"], out["frames"] = len(path), slide.tiles_decoded
    viewer.layers.remove(layer)
    slide.close()
    return out


def pan_figures(viewer, sources: dict, sweeps: int) -> dict:
    """``pan_stalls`` of each source, ``sweeps`` times interleaved (so both see the same background load):
    the median of each figure, and the worst cold stall of all sweeps."""
    runs = {name: [] for name in sources}
    for _ in range(sweeps):
        for name, source in sources.items():
            runs[name].append(pan_stalls(viewer, source))
    return {
        name: {
            **{key: float(np.median([r[key] for r in found])) for key in found[0]},
            "pan_cold_worst_s": max(r["pan_cold_max_s"] for r in found),
        }
        for name, found in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweeps", type=int, default=3, help="cold + warm pan sweeps per source (medians)")
    parser.add_argument("--no-viewer", action="store_true", help="skip panning in napari (needs a display)")
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
        if not args.no_viewer:
            import napari

            pyramid = with_pyramid(local, Path(folder) / "pyramid")
            server.upload(*sorted(pyramid.glob("*.dcm")))
            viewer = napari.Viewer(show=True)
            viewer.window._qt_window.resize(1400, 900)
            pan_stalls(viewer, pyramid)  # napari's and vispy's first-use costs: not part of either figure
            web_pyramid = series_url(server, next(pyramid.glob("*.dcm")))
            pans = pan_figures(viewer, {"file": pyramid, "web": web_pyramid}, args.sweeps)
            disk.update(pans["file"])
            web.update(pans["web"])
            viewer.close()
    print(f"CMU-1-Small-Region (2220x2967, 240-px JPEG frames), {args.regions} random 512x512 regions at level 0")
    names = {
        "open_s": "open (ms)",
        "cold_reads_s": "cold read (ms/region)",
        "warm_reads_s": "warm read (ms/region)",
        "first_view_cold_s": "first view, cold (ms)",
        "first_view_warm_s": "first view, warm (ms)",
    }
    if not args.no_viewer:
        names["pan_cold_max_s"] = "longest stall panning, cold (ms)"
        names["pan_warm_max_s"] = "longest stall panning, warm (ms)"
        names["pan_cold_worst_s"] = f"  worst of {args.sweeps} cold sweeps (ms)"
        names["pan_cold_p99_s"] = "99th pct gap panning, cold (ms)"
    print(f"{'':34s}{'file':>9s}{'DICOMweb':>10s}{'ratio':>8s}")
    for key, name in names.items():
        per = args.regions if "reads" in key else 1
        a, b = disk[key] / per * 1000, web[key] / per * 1000
        print(f"{name:34s}{a:9.1f}{b:10.1f}{b / a:7.1f}x")
    if not args.no_viewer:
        print(
            f"panning (medians of {args.sweeps} sweeps): {web['steps']:.0f} camera moves of {STEP_MS} ms; gaps over "
            f"100 ms: file {disk['pan_cold_over']:.0f} cold / {disk['pan_warm_over']:.0f} warm, DICOMweb "
            f"{web['pan_cold_over']:.0f} cold / {web['pan_warm_over']:.0f} warm; DICOMweb frames fetched "
            f"{web['frames']:.0f} ({web['frames_at_start']:.0f} for the first view)"
        )


if __name__ == "__main__":
    main()
