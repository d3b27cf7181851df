"""PathAlign workspace speed on the 100,000 x 80,000 pyramid: time from Analyse to ready, each map, GUI stalls.

Embedded models on the CPU, the default grid (10,240 patches; ``--quick``: 1,024), a fresh feature
cache. Two parts, each in its own process (so peak RSS and model loading are each part's own):

- core, no GUI: ``SlideAnalysis.iter_prepare()`` split by ``Progress.stage`` (models, features,
  slide embedding, attention, regions), then the first text heatmap (encodes the text and the
  background vocabulary), each map after it, ``zero_shot()``, ``region()`` over a quarter of the
  tissue, peak RSS, and the prepare again with a warm feature cache;
- GUI: a real napari window with the "PathAlign workspace" dock; a 10-ms QTimer in the GUI thread
  records the gaps between its ticks while Analyse runs and while ``show_text`` makes a layer (a
  gap is a frozen window; goal: none over 100 ms). While the GUI thread is late, a sampler thread
  records where every thread is, which names the cause of each long stall.

The slide is made by make_big_pyramid.py (~40 s, 1.5 GiB in benchmarks/data/) when it is missing.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_workspace.py \
        [SLIDE] [--quick] [--only core|gui]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

from napari_pathalign.reporting.drafting import iter_draft

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "benchmarks" / "data" / "big-100000x80000.tif"
TEXT, OTHER_TEXT = "metastatic carcinoma", "lymphoid tissue"
TICK_MS = 10  # the GUI-thread timer's period
STALL_S = 0.1  # the goal: no gap between ticks longer than this
SAMPLE_AFTER_S = 0.05  # the sampler records stacks once the GUI thread is this late
QUICK_PATCHES = 1024


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def grid_config(quick: bool):
    from napari_pathalign.core.grid_config import GridConfig

    return GridConfig(max_patches=QUICK_PATCHES) if quick else GridConfig()


def split_stages(log: list, t0: float) -> dict[str, float]:
    """Seconds per step from the times each ``Progress`` left ``iter_prepare`` (log: (time, stage, done, total)).

    A stage's messages announce work ("Loading the models ...", "Encoding the slide ..."), so an
    interval belongs to the Progress that opened it; features are split because their first Progress
    comes after the tissue mask and grid, and the cache is written after their last.
    """
    out: dict[str, float] = {}
    prev_t, prev, cached = t0, "models", False
    for t, stage, done, total in log:
        if stage == "features" and prev == "features":
            name = "features: read + encode patches"
        elif stage == "features":
            cached = done == total  # a cache hit yields one Progress, already complete
            name = "features: read the cache" if cached else "features: tissue mask + grid"
        elif prev == "features":
            name = "features: read the cache" if cached else "features: write the cache"
        else:
            name = prev
        out[name] = out.get(name, 0.0) + t - prev_t
        prev_t, prev = t, stage
    return out


def stage_rows(steps: dict[str, float], prefix: str) -> list[list]:
    """Table rows: one per stage (the sum of its steps), the features' steps indented below it."""
    rows, totals = [], {}
    for name, s in steps.items():
        totals[name.split(":")[0]] = totals.get(name.split(":")[0], 0.0) + s
    for stage, s in totals.items():
        rows.append([f"{prefix}{stage}", s, ""])
        rows += [
            [f"{prefix}  {name.split(': ')[1]}", t, ""]
            for name, t in steps.items()
            if ":" in name and name.startswith(stage)
        ]
    return rows


# ---------------------------------------------------------------------------------------- core
def run_core(args, cache_dir: Path) -> dict:
    from napari_pathalign.core.generators import run_to_end
    from napari_pathalign.engine.regions import rectangle
    from napari_pathalign.io import open_slide
    from napari_pathalign.reporting.analysis import SlideAnalysis

    slide = open_slide(args.slide)
    rows = []

    def prepare(label: str) -> tuple[SlideAnalysis, float]:
        a = SlideAnalysis(slide, cache_dir=cache_dir, grid=grid_config(args.quick))
        log, t0 = [], time.perf_counter()
        for p in a.iter_prepare():
            log.append((time.perf_counter(), p.stage, p.done, p.total))
            if p.stage != "features" or p.done in (0, p.total):
                print(f"  [core {label}] {time.perf_counter() - t0:7.1f} s  {p}", file=sys.stderr, flush=True)
        total = time.perf_counter() - t0
        rows.append(
            [f"prepare, {label}: Analyse -> ready", total, f"{len(a.features.features)} patches, {a.device_info}"]
        )
        rows.extend(stage_rows(split_stages(log, t0), "  "))
        return a, total

    a, t_cold = prepare("cold cache")
    n = len(a.features.features)
    if not args.quick and n != 10240:
        print(f"warning: the default grid gave {n} patches on {args.slide.name}, not 10,240", file=sys.stderr)
    rss_prepare = peak_rss_mib()

    maps = [
        (f"text_heatmap('{TEXT}'), first", "encodes the text + vocabulary", lambda: a.text_heatmap(TEXT)),
        (f"text_heatmap('{OTHER_TEXT}')", "a second text", lambda: a.text_heatmap(OTHER_TEXT)),
        (f"text_heatmap('{TEXT}') again", "text cached", lambda: a.text_heatmap(TEXT)),
        ("attention_heatmap()", "mean over all", lambda: a.attention_heatmap()),
        (f"attention_heatmap(text='{TEXT}')", "queries weighted by the text", lambda: a.attention_heatmap(text=TEXT)),
        (
            "attention_heatmap(layer=0, head=1, query=3)",
            "one query",
            lambda: a.attention_heatmap(layer=0, head=1, query=3),
        ),
        (
            "query_heatmaps() (dock gallery)",
            "the 32 maps; their thumbnails: GUI row _on_ready",
            lambda: a.query_heatmaps(),
        ),
        ("zero_shot() (default classes)", "", lambda: a.zero_shot()),
    ]
    for name, note, fn in maps:
        out, s = timed(fn)
        if name.startswith("zero_shot"):
            note = f"best '{out.best}' ({out.probabilities[out.best]:.0%}), {len(out.heatmaps)} maps"
        rows.append([name, s, note])

    t0 = time.perf_counter()
    gen = iter_draft(a)
    next(gen)
    first = time.perf_counter() - t0
    draft = run_to_end(gen)
    full = time.perf_counter() - t0
    rows.append(["draft: first streamed token", first, "greedy, after Analyse"])
    rows.append(
        [
            "draft: full text + support + evidence",
            full,
            f"{len(draft.sentences)} sentences, {len(draft.text)} characters",
        ]
    )

    # a quarter of the tissue: the left half of the patches (by centre x), then the upper half of those
    centres = a.features.xy_level0 + a.features.size_level0 / 2.0  # (N, 2) level-0 (x, y)
    x_mid = np.median(centres[:, 0])
    y_mid = np.median(centres[centres[:, 0] <= x_mid, 1])
    x0, y0 = centres.min(0) - a.features.size_level0
    child, s = timed(a.region, rectangle(x0, y0, x_mid - x0, y_mid - y0))
    rows.append(
        [
            "region(polygon), a quarter of the tissue",
            s,
            f"{len(child.features.features)} of {n} patches; re-encodes them",
        ]
    )
    rss_maps = peak_rss_mib()
    del a, child

    _, t_warm = prepare("warm cache")
    return {
        "rows": rows,
        "patches": n,
        "t_cold": t_cold,
        "t_warm": t_warm,
        "rss_prepare": rss_prepare,
        "rss_maps": rss_maps,
        "rss_end": peak_rss_mib(),
    }


# ---------------------------------------------------------------------------------------- GUI
def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, grouped: the GUI thread, software-GL (llvmpipe) threads, the rest."""
    out = {"GUI thread": 0.0, "llvmpipe (software GL)": 0.0, "other threads": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        comm, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        group = (
            "GUI thread"
            if int(task.name) == os.getpid()
            else "llvmpipe (software GL)"
            if comm.startswith("llvmpipe")
            else "other threads"
        )
        out[group] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


def short(f: traceback.FrameSummary) -> str:
    path = f.filename
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{f.lineno} {f.name}"


def where(frame) -> str:
    """A thread's position: its innermost frame, after the innermost frame of this package if that differs."""
    stack = traceback.extract_stack(frame)  # outermost first
    inner = stack[-1]
    if inner.filename.endswith("bench_workspace.py"):
        return (
            "Qt event loop (C++: painting, layout or waiting for the GIL)"
            if inner.name == "wait"
            else "(running its timer: not stalled)"
        )
    ours = [f for f in stack if "napari_pathalign" in f.filename]
    return f"{short(ours[-1])} -> {short(inner)}" if ours and ours[-1] is not inner else short(inner)


class StallSampler(threading.Thread):
    """While the GUI thread is late for its tick, records where each busy thread is (every 20 ms)."""

    def __init__(self, ticks: list):
        super().__init__(daemon=True, name="stall-sampler")
        self.ticks, self.samples, self.stopped = ticks, [], threading.Event()  # samples: (time, {thread: where})

    def run(self):
        main = threading.main_thread().ident
        while not self.stopped.wait(0.02):
            now = time.perf_counter()
            if not self.ticks or now - self.ticks[-1] < SAMPLE_AFTER_S:
                continue
            names = {t.ident: t.name for t in threading.enumerate()}
            seen = {}
            for ident, frame in sys._current_frames().items():
                if ident == self.ident:
                    continue
                w = where(frame)
                idle = any(k in w for k in ("threading.py", "concurrent/futures/thread.py", "queue.py", "selectors.py"))
                if ident == main or not idle:  # Qt's pool threads are not in threading's list: the dock's workers
                    seen["GUI thread" if ident == main else names.get(ident, "worker (QThreadPool)")] = w
            self.samples.append((now, seen))


class TickRecorder:
    """Times of the ticks of a 10-ms timer in the GUI thread; ``wait()`` runs the event loop until told to stop."""

    def __init__(self):
        from qtpy.QtCore import QEventLoop, Qt, QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.loop = QEventLoop()
        self.until = None  # predicate checked at each tick; True quits wait()
        self.sampler = StallSampler(self.ticks)
        self.sampler.start()

    def _tick(self):
        self.ticks.append(time.perf_counter())
        if self.until is not None and self.until():
            self.loop.quit()

    def wait(self, until, timeout_s: float) -> tuple[float, float]:
        """Record ticks until ``until()`` or the timeout; returns the (start, end) of the window."""
        self.ticks.clear()
        deadline = time.perf_counter() + timeout_s
        self.until = lambda: until() or time.perf_counter() > deadline
        self.ticks.append(time.perf_counter())
        self.timer.start()
        self.loop.exec()
        self.timer.stop()
        return self.ticks[0], self.ticks[-1]

    def stalls(self, stage_log: list, handlers: list) -> dict:
        """Gap figures, and the longest gaps with the stage they fell in, the GUI handlers they overlap
        and the sampled stacks."""
        t = np.asarray(self.ticks)
        gaps = np.diff(t)
        out = {
            "max": float(gaps.max()),
            "p50": float(np.percentile(gaps, 50)),
            "p99": float(np.percentile(gaps, 99)),
            "over": int((gaps > STALL_S).sum()),
            "ticks": len(t),
            "worst": [],
        }
        for i in np.argsort(gaps)[::-1][:6]:
            if gaps[i] <= STALL_S:
                break
            a, b = t[i], t[i + 1]
            stages = [s for (ts, s, *_) in stage_log if ts <= a][-1:] + [s for (ts, s, *_) in stage_log if a < ts <= b]
            during = sorted({name for name, s, e in handlers if s < b and e > a})
            causes: dict[str, Counter] = {}
            for ts, seen in self.sampler.samples:
                if a < ts <= b:
                    for thread, w in seen.items():
                        causes.setdefault(thread, Counter())[w] += 1
            out["worst"].append(
                {
                    "gap": float(gaps[i]),
                    "at": float(a - t[0]),
                    "stage": " -> ".join(dict.fromkeys(stages)) or "-",
                    "handlers": during,
                    "where": {k: c.most_common(2) for k, c in causes.items()},
                }
            )
        return out


def run_gui(args) -> dict:
    import napari

    from napari_pathalign.engine import analysis as analysis_mod

    cache = analysis_mod.default_cache_dir()
    if not str(cache).startswith(os.environ.get("XDG_CACHE_HOME", "\0")):
        raise SystemExit(
            (
                f"the widget's feature cache is {cache}, not under the fresh XDG_CACHE_HOME; features would "
                "come from an old cache"
            )
        )
    stage_log: list = []  # (time, stage, done, total), appended in the worker thread
    prepare = analysis_mod.PreparedSlide.iter_prepare

    def logged_prepare(self):  # instrumentation only: when each Progress leaves the worker
        for p in prepare(self):
            stage_log.append((time.perf_counter(), p.stage, p.done, p.total))
            yield p

    analysis_mod.PreparedSlide.iter_prepare = logged_prepare
    if args.quick:  # the dock takes the model's trained grid; --quick caps it
        analysis_mod.PreparedSlide._grid = lambda self: grid_config(True)

    rows = []
    t0 = time.perf_counter()
    viewer = napari.Viewer(show=True)
    layer = viewer.open(str(args.slide), plugin="napari-pathalign")[0]
    _, widget = viewer.window.add_plugin_dock_widget("napari-pathalign", "PathAlign workspace")
    viewer.layers.selection.active = layer
    rows.append(["window + open slide + dock", time.perf_counter() - t0, ""])

    handlers: list = []  # (name, start, end) of the dock's slots that run in the GUI thread

    def wrap(name: str):
        fn = getattr(widget, name)

        def run(*a, **k):
            s = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                handlers.append((name, s, time.perf_counter()))

        setattr(widget, name, run)  # the dock looks these up when it connects or calls them

    for name in ("_on_progress", "_on_ready", "show_heatmap"):
        wrap(name)
    rec = TickRecorder()
    result = {"rows": rows}
    warm = {"done": False}
    widget.warm_up.finished.connect(
        lambda: warm.update(done=True)
    )  # the dock imports torch and loads the models in a worker
    t_warm = time.perf_counter()
    rec.wait(lambda: warm["done"], 600)
    rows.append(["dock warm-up (imports, models; worker)", time.perf_counter() - t_warm, "starts when the dock opens"])
    result["warmup"] = rec.stalls([], handlers)
    rec.wait(lambda: False, 3.0)  # the slide's first render and idle: the baseline for the stalls below
    result["idle"] = rec.stalls([], handlers)

    state = {"finished": False, "error": None}
    t0 = time.perf_counter()
    stage_log.append((t0, "models", 0, 3))  # _prepare loads the models through the registry before iter_prepare
    cpu0 = thread_cpu()
    worker = widget.analyse()
    if worker is None:
        raise SystemExit(f"Analyse did not start: {widget.status.text()}")
    worker.finished.connect(lambda: state.update(finished=time.perf_counter()))
    worker.errored.connect(lambda exc: state.update(error=repr(exc)))
    rec.wait(lambda: state["finished"], 3600)
    if not state["finished"] or state["error"]:
        raise SystemExit(f"Analyse did not finish: {state['error'] or 'timed out'}; status: {widget.status.text()}")
    t_ready = state["finished"] - t0
    result["cpu"] = {k: v - cpu0[k] for k, v in thread_cpu().items()}
    analysis = widget.analysis
    ready = [(n, s, e) for n, s, e in handlers if n == "_on_ready"]
    progress = [e - s for n, s, e in handlers if n == "_on_progress"]
    rows.append(
        [
            "Analyse -> ready (worker finished)",
            t_ready,
            f"{len(analysis.features.features)} patches, {analysis.device_info}",
        ]
    )
    rows.extend(stage_rows(split_stages(stage_log[1:], t0), "  "))
    rows.append(["  _on_ready (GUI thread: gallery)", ready[-1][2] - ready[-1][1], "32 query maps + thumbnails"])
    rows.append(["  _on_progress, longest of all (GUI thread)", max(progress), f"{len(progress)} calls"])
    result["analyse"] = rec.stalls(stage_log, handlers)

    widget.heatmap_layer = None
    done = {}
    t0 = time.perf_counter()
    text_worker = widget.show_text(TEXT)
    if text_worker is None:
        raise SystemExit(f"show_text did not start: {widget.status.text()}")
    text_worker.errored.connect(lambda exc: done.update(error=repr(exc)))

    def shown():  # the layer is there; then record 1 s more, in which it is drawn
        if widget.heatmap_layer is not None and "t" not in done:
            done["t"] = time.perf_counter()
        return "error" in done or ("t" in done and time.perf_counter() - done["t"] > 1.0)

    rec.wait(shown, 600)
    if "t" not in done:
        raise SystemExit(f"show_text made no layer: {done.get('error', 'timed out')}")
    shows = [e - s for n, s, e in handlers if n == "show_heatmap"]
    rows.append(
        [
            f"show_text('{TEXT}') -> heatmap layer",
            done["t"] - t0,
            "worker encodes the text; layer made in the GUI thread",
        ]
    )
    rows.append(
        [
            "  show_heatmap (GUI thread)",
            shows[-1],
            f"layer {widget.heatmap_layer.data.shape[1]} x {widget.heatmap_layer.data.shape[0]} px",
        ]
    )
    result["text"] = rec.stalls([(t0, "show_text")], handlers)
    from napari_pathalign._napari.report_widget import ReportWidget
    from napari_pathalign.reporting.report_store import ReportStore

    report = ReportWidget(viewer, ReportStore(Path(os.environ["XDG_CACHE_HOME"]) / "reports"))
    viewer.window.add_dock_widget(report, name="Report")
    viewer.layers.selection.active = layer
    report.layer_changed()
    drafted = {}
    t0 = time.perf_counter()
    draft_worker = report.start_draft()
    draft_worker.yielded.connect(
        lambda item: drafted.setdefault("first", time.perf_counter()) if item[0] == "text" else None
    )
    draft_worker.finished.connect(lambda: drafted.update(done=time.perf_counter()))
    rec.wait(lambda: "done" in drafted, 600)
    rows.append(
        ["Report dock: Draft -> first token in the editor", drafted.get("first", float("nan")) - t0, "streamed"]
    )
    rows.append(
        [
            "Report dock: Draft -> done (support, evidence, saved)",
            drafted.get("done", float("nan")) - t0,
            report.status.text()[:60],
        ]
    )
    result["draft"] = rec.stalls([(t0, "draft")], handlers)

    from napari_pathalign._napari.chat_widget import ChatWidget

    chat = ChatWidget(viewer, report.store)
    viewer.window.add_dock_widget(chat, name="Chat", tabify=True)
    viewer.layers.selection.active = layer
    chat.layer_changed()
    asked = {}
    t0 = time.perf_counter()
    chat_worker = chat.ask("Is tumour present?")
    chat_worker.finished.connect(lambda: asked.update(done=time.perf_counter()))
    rec.wait(lambda: "done" in asked, 600)
    rows.append(["Chat dock: question -> answer with support", asked.get("done", float("nan")) - t0, "greedy"])
    result["chat"] = rec.stalls([(t0, "chat")], handlers)

    # Analyse again, as after reopening the slide: the models are loaded, features and neighbourhoods cached
    state = {"finished": False, "error": None}
    t0 = time.perf_counter()
    worker = widget.analyse()
    worker.finished.connect(lambda: state.update(finished=time.perf_counter()))
    worker.errored.connect(lambda exc: state.update(error=repr(exc)))
    rec.wait(lambda: state["finished"], 600)
    if state["error"]:
        raise SystemExit(f"the second Analyse failed: {state['error']}")
    rows.append(["Analyse again (warm: cached features and neighbourhoods)", state["finished"] - t0, "same slide"])
    result["warm"] = rec.stalls([(t0, "warm analyse")], handlers)
    result["rss"] = peak_rss_mib()
    rec.sampler.stopped.set()
    viewer.close()
    return result


# ---------------------------------------------------------------------------------------- report
def print_report(res: dict, args) -> None:
    n = res.get("core", {}).get("patches")
    print(
        (
            f"\n{args.slide.name}: embedded models, CPU ({os.cpu_count()} "
            f"cores), {n or '?'} patches{' (--quick)' if args.quick else ''}"
        )
    )
    print(f"{'step':52} {'seconds':>8}  note")
    for part in ("core", "gui"):
        if part not in res:
            continue
        print(f"-- {part} {'-' * 70}")
        for step, s, note in res[part]["rows"]:
            print(f"{step:52} {s:8.2f}  {note}")
    if "core" in res:
        c = res["core"]
        print(
            (
                f"\ncore peak RSS: {c['rss_prepare']:.0f} MiB after prepare, {c['rss_maps']:.0f} MiB after "
                f"the maps, {c['rss_end']:.0f} MiB at the end (warm prepare)"
            )
        )
        print(f"warm cache: prepare {c['t_warm']:.1f} s vs {c['t_cold']:.1f} s cold")
    if "gui" not in res:
        return
    g = res["gui"]
    print(f"GUI process peak RSS: {g['rss']:.0f} MiB")
    print("GUI process CPU seconds while Analyse ran: " + ", ".join(f"{k} {v:.1f}" for k, v in g["cpu"].items()))
    print(f"\nGUI event-loop stalls (gaps between {TICK_MS}-ms timer ticks; goal: max < {STALL_S * 1000:.0f} ms)")
    for key, label in (
        ("warmup", "dock warm-up"),
        ("idle", "idle, slide shown"),
        ("analyse", "while Analyse runs"),
        ("text", "show_text -> layer"),
        ("draft", "while drafting"),
        ("chat", "while answering"),
        ("warm", "Analyse again (warm)"),
    ):
        s = g[key]
        verdict = "ok" if s["max"] < STALL_S else "OVER GOAL"
        print(
            (
                f"  {label:24} max {s['max'] * 1000:7.0f} ms   p50 {s['p50'] * 1000:4.0f} ms   "
                f"p99 {s['p99'] * 1000:5.0f} ms   gaps > {STALL_S * 1000:.0f} "
                f"ms: {s['over']:3d} of {s['ticks']} ticks   {verdict}"
            )
        )
    for key in ("warmup", "analyse", "text", "draft", "chat", "warm"):
        for w in g[key]["worst"]:
            print(
                (
                    f"  [{key}] {w['gap'] * 1000:.0f} ms gap at +{w['at']:.1f} s, stage {w['stage']}, GUI handlers: "
                    f"{', '.join(w['handlers']) or 'none'}"
                )
            )
            for thread, locs in w["where"].items():
                print(f"      {thread}: " + "; ".join(f"{loc} (x{k})" for loc, k in locs))
            if not w["where"]:
                print("      no sample: the sampler thread could not run either (one thread held the GIL)")


def ensure_slide(path: Path) -> None:
    if path.exists():
        return
    if path != DEFAULT:
        raise SystemExit(f"{path} not found")
    print(f"{path.name} missing: writing it with make_big_pyramid.py (~40 s, 1.5 GiB)", file=sys.stderr)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_big_pyramid.py")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slide", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument(
        "--quick", action="store_true", help=f"cap the grid at {QUICK_PATCHES} patches: a fast sanity run"
    )
    parser.add_argument("--only", choices=("core", "gui"), help="run one part")
    parser.add_argument("--child", choices=("core", "gui"), help=argparse.SUPPRESS)  # a part, in its own process
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        out = (
            run_core(args, Path(os.environ["XDG_CACHE_HOME"]) / "core-features")
            if args.child == "core"
            else run_gui(args)
        )
        args.result.write_text(json.dumps(out))
        return

    ensure_slide(args.slide)
    parts = [args.only] if args.only else ["core", "gui"]
    if "gui" in parts and not os.environ.get("DISPLAY"):
        raise SystemExit(
            'no display for the GUI part: run under xvfb-run -a -s "-screen 0 1600x1000x24" (or pass --only core)'
        )
    res = {}
    for part in parts:
        with tempfile.TemporaryDirectory(prefix=f"bench-workspace-{part}-") as tmp:
            # a fresh cache per part: the core passes a folder in it, the dock's default cache moves with XDG_CACHE_HOME
            env = {**os.environ, "XDG_CACHE_HOME": tmp}
            result = Path(tmp) / "result.json"
            cmd = [sys.executable, __file__, str(args.slide), "--child", part, "--result", str(result)] + (
                ["--quick"] if args.quick else []
            )
            print(f"== {part} part ...", file=sys.stderr, flush=True)
            if subprocess.run(cmd, env=env).returncode != 0 or not result.exists():
                print(f"the {part} part failed (see above)", file=sys.stderr)
                continue
            res[part] = json.loads(result.read_text())
    print_report(res, args)


if __name__ == "__main__":
    main()
