"""Slide-vector search at 10k / 100k / 1M vectors: numpy brute force vs FAISS Flat, HNSW, IVF, IVF-PQ.

The vectors are PathAlign-R slide embeddings (256-d, L2-normalised, inner product). The 40 demo
slides of demo-data/test/slides are encoded with the shipped retrieval model ("embedded-r", its
patch features read from the cache in demo-data/test/features) and the synthetic archive is shaped
on them: a Gaussian mixture on the sphere of a few thousand centres, each centre = a real vector +
noise along the real vectors' own spread (their covariance) + a little isotropic noise, each vector =
a centre + the same kinds of noise, normalised. The real vectors are mixed into the base; the
queries (held out, never in the base) are drawn the same way plus the 40 real vectors themselves
(present in the base) and 40 jittered copies of them ("another slide of the same case").

Printed in one run, per size: build time, index size (bytes written by faiss.write_index, counted
without storing them; for numpy the vector bytes), single-query latency p50/p99 (one query per call,
faiss.omp_set_num_threads(1) and BLAS limited to 1 thread), batch throughput (all queries in one
call, every thread), recall@10 against exact search (all queries, and the 80 real-derived ones).
Then a FlatIP single-query sweep over N that gives the exact-search threshold (EXACT_MAX) and the
configuration recommended above it. Goal at 1M: p50 < 5 ms with recall@10 >= 0.95.

HNSW is built with one add() of the whole base, after a 50k-vector probe build whose time, scaled
to N, must fit --build-budget (default 300 s; otherwise it is skipped and said so). "HNSW 20 adds" is
the same index grown by 20 add() calls, as an archive grows; it is abandoned when its projected time
exceeds the budget (IVF-PQ too). IVF-PQ + refine reuses the IVFFlat centroids (their k-means counts
in its build time). Recommended above EXACT_MAX: the cheapest setting per index that meets the goal
on all queries and on the real-derived ones at every measured size above EXACT_MAX; the one with the
lowest p50 at the largest size wins.

    .venv/bin/python benchmarks/bench_search.py [--sizes 10000 100000] [--quick] [--build-budget 300]
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SLIDES = ROOT / "demo-data" / "test" / "slides"
FEATURES = ROOT / "demo-data" / "test" / "features"
DIM = 256
K = 10
GOAL_MS = 5.0
GOAL_RECALL = 0.95

# mixture shape, calibrated so that 40-vector samples of the synthetic set match the 40 real ones
# (pairwise-cosine quantiles, nearest-neighbour cosine, variance in the top 5 components, norm of the mean)
CENTRES = 3000
CENTRE_SUB, CENTRE_ISO = 0.30, 0.15  # centre = real + CENTRE_SUB * (real covariance) + CENTRE_ISO * (isotropic)
POINT_SUB, POINT_ISO = 0.15, 0.15  # vector = centre + POINT_SUB * (real covariance) + POINT_ISO * (isotropic)


# ------------------------------------------------------------------------------------------- data
def real_vectors() -> tuple[np.ndarray, list[str]]:
    """(40, 256) PathAlign-R slide vectors of the demo test slides (cached patch features reused)."""
    import torch

    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.io import open_slide
    from napari_pathalign.models.encoders import load_patch_encoder
    from napari_pathalign.models.pathalign import PathAlign

    paths = sorted(SLIDES.glob("*.tif"))
    if not paths:
        raise SystemExit(f"no slides in {SLIDES}")
    torch.set_num_threads(2)
    model = PathAlign.load("embedded-r", device="cpu")
    encoder = load_patch_encoder("embedded")
    out = []
    for p in paths:
        feats = embed_slide(open_slide(p), encoder, GridConfig(), cache_dir=FEATURES)
        out.append(model.encode_slide(feats).vector)
    del model, encoder
    gc.collect()
    return np.stack(out).astype(np.float32), [p.stem for p in paths]


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class Mixture:
    """Gaussian mixture on the sphere shaped on the real vectors."""

    def __init__(self, real: np.ndarray, centres: int, iso: float, seed: int):
        self.real = real
        self.dev = real - real.mean(0)  # (n, D): x = z @ dev / sqrt(n-1) has the real covariance
        self.iso = iso
        rng = np.random.default_rng(seed)
        j = rng.integers(0, len(real), centres)
        self.centres = unit(
            real[j] + CENTRE_SUB * self.sub(centres, rng) + CENTRE_ISO * iso * self.isotropic(centres, rng)
        )

    def sub(self, m: int, rng) -> np.ndarray:
        return (
            rng.standard_normal((m, len(self.dev)), dtype=np.float32)
            @ self.dev
            / np.float32(math.sqrt(len(self.dev) - 1))
        )

    def isotropic(self, m: int, rng) -> np.ndarray:
        return rng.standard_normal((m, DIM), dtype=np.float32) / np.float32(math.sqrt(DIM))

    def around(self, base: np.ndarray, rng) -> np.ndarray:
        return unit(base + POINT_SUB * self.sub(len(base), rng) + POINT_ISO * self.iso * self.isotropic(len(base), rng))

    def sample(self, m: int, rng) -> np.ndarray:
        return self.around(self.centres[rng.integers(0, len(self.centres), m)], rng)


def make_data(real: np.ndarray, n_base: int, n_query: int, iso: float, seed: int = 0):
    """Base (n_base, D) with the real vectors among its first rows (so every prefix >= 10k holds them),
    queries, kinds."""
    mix = Mixture(real, CENTRES, iso, seed)
    rng = np.random.default_rng(seed + 1)
    xb = np.empty((n_base, DIM), np.float32)
    for s in range(0, n_base, 100_000):
        xb[s : s + 100_000] = mix.sample(min(100_000, n_base - s), rng)
    pos = rng.choice(min(n_base, 10_000), len(real), replace=False)
    xb[pos] = real
    n_syn = max(0, n_query - 2 * len(real))
    xq = np.concatenate([real, mix.around(real.copy(), rng), mix.sample(n_syn, rng)])
    kind = np.array(["real"] * len(real) + ["real+jitter"] * len(real) + ["synthetic"] * n_syn)
    order = rng.permutation(len(xq))  # mixed kinds in any prefix (the latency timing uses a prefix)
    return xb, np.ascontiguousarray(xq[order]), kind[order], mix


def shape_stats(x: np.ndarray) -> tuple:
    g = x @ x.T
    pair = g[np.triu_indices(len(x), 1)]
    np.fill_diagonal(g, -2)
    dev = x - x.mean(0)
    ev = np.linalg.svd(dev, compute_uv=False) ** 2
    return (
        *np.percentile(pair, [5, 25, 50, 75, 95]),
        float(np.median(g.max(1))),
        float(ev[:5].sum() / ev.sum()),
        float(np.linalg.norm(x.mean(0))),
    )


def print_shape(real: np.ndarray, xb: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    n = len(real)
    syn = np.array(
        [
            shape_stats(xb[rng.choice(np.arange(10_000, len(xb)) if len(xb) > 20_000 else len(xb), n, replace=False)])
            for _ in range(50)
        ]
    )
    cols = "pair cos p5   p25   p50   p75   p95 | NN cos | top-5 PC var | |mean|"
    print(f"  {'':28} {cols}")
    for label, s in ((f"real ({n} slides)", shape_stats(real)), (f"synthetic (median of 50 x {n})", np.median(syn, 0))):
        print(
            (
                f"  {label:28} {s[0]:+12.2f} {s[1]:+5.2f} {s[2]:+5.2f} {s[3]:+5.2f} {s[4]:+5.2f} | {s[5]:6.3f} "
                f"| {s[6]:12.2f} | {s[7]:6.2f}"
            )
        )


# ----------------------------------------------------------------------------------- measuring
@dataclass
class Row:
    size: int
    method: str
    params: str
    build_s: float = float("nan")
    nbytes: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    timed: int = 0
    qps: float = float("nan")
    recall: float = float("nan")
    recall_real: float = float("nan")
    note: str = ""
    meets: bool = field(default=False)


def index_bytes(index) -> int:
    import faiss

    n = [0]

    def count(b):
        n[0] += len(b)
        return len(b)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer
    return n[0]


def recall_at_k(found: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    hits = np.array([len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth)]) / truth.shape[1]
    return float(hits[mask].mean() if mask is not None else hits.mean())


def latency(search1, xq: np.ndarray, min_queries: int, budget_s: float) -> tuple[float, float, int]:
    """p50, p99 (ms) of one query per call on one thread; at least min_queries, then until budget_s."""
    import faiss
    from threadpoolctl import threadpool_limits

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    times = []
    try:
        with threadpool_limits(1):
            for i in range(3):
                search1(xq[i : i + 1])  # warm-up
            start = time.perf_counter()
            for i in range(len(xq)):
                t0 = time.perf_counter()
                search1(xq[i : i + 1])
                times.append(time.perf_counter() - t0)
                if i + 1 >= min_queries and time.perf_counter() - start > budget_s:
                    break
    finally:
        faiss.omp_set_num_threads(threads)
    t = np.array(times) * 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 99)), len(t)


def numpy_search(xb: np.ndarray, xq: np.ndarray, k: int = K) -> np.ndarray:
    out = np.empty((len(xq), k), np.int64)
    for s in range(0, len(xq), 32):
        scores = xq[s : s + 32] @ xb.T  # (q, N)
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, 1)
        out[s : s + 32] = np.take_along_axis(part, np.argsort(-top, 1), 1)
    return out


def measure(rows, size, method, params, search1, searchb, xq, truth, real_mask, args, build_s=0.0, nbytes=0):
    p50, p99, n = latency(search1, xq, args.min_timed, args.time_budget)
    t0 = time.perf_counter()
    found = searchb(xq)
    qps = len(xq) / (time.perf_counter() - t0)
    row = Row(
        size,
        method,
        params,
        build_s,
        nbytes,
        p50,
        p99,
        n,
        qps,
        recall_at_k(found, truth),
        recall_at_k(found, truth, real_mask),
    )
    row.meets = row.p50 < GOAL_MS and row.recall >= GOAL_RECALL
    rows.append(row)
    print_row(row)
    return row


HEADER = (
    f"{'N':>9}  {'method':15} {'params':22} {'build s':>8} {'size MB':>8} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'(n)':>5} {'batch q/s':>10} {'R@10':>6} {'R@10 real':>9}  goal"
)


def print_row(r: Row) -> None:
    if r.note:
        print(f"{r.size:>9,}  {r.method:15} {r.params:22} {r.note}", flush=True)
        return
    goal = "yes" if r.meets else "-"
    print(
        (
            f"{r.size:>9,}  {r.method:15} {r.params:22} {r.build_s:8.1f} {r.nbytes / 2**20:8.1f} {r.p50:8.3f} "
            f"{r.p99:8.3f} {r.timed:5d} {r.qps:10.0f} {r.recall:6.3f} {r.recall_real:9.3f}  {goal}"
        ),
        flush=True,
    )


# ------------------------------------------------------------------------------------- indexes
def nlist_for(n: int) -> tuple[int, str]:
    want = int(4 * math.sqrt(n))
    cap = n // 39  # faiss wants >= 39 training vectors per list
    return (want, "") if want <= cap else (cap, f" (4*sqrt(N)={want} capped at N/39)")


def train_sample(xb: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    m = min(len(xb), 50 * nlist)  # k-means on 50 vectors per list (faiss would take up to 256 per list)
    if m == len(xb):
        return xb
    idx = np.sort(np.random.default_rng(seed).choice(len(xb), m, replace=False))
    return xb[idx]


def build_chunked(index, xb: np.ndarray, budget: float, chunks: int = 20) -> tuple[float, str]:
    """index.add in chunks; abandons when the projected total exceeds budget. Returns (seconds, '' or why skipped)."""
    n = len(xb)
    step = max(5_000, -(-n // chunks))
    t0 = time.perf_counter()
    for s in range(0, n, step):
        index.add(xb[s : s + step])
        done = min(n, s + step)
        el = time.perf_counter() - t0
        if done < n and done >= 2 * step:
            proj = el * (n / done) * (math.log(n) / math.log(done))  # insertion cost grows ~log N
            if proj > budget:
                return (
                    el,
                    (
                        f"skipped: build projected at {proj:.0f} s > budget {budget:.0f} s ({done:,} of {n:,} added "
                        f"in {el:.0f} s)"
                    ),
                )
    return time.perf_counter() - t0, ""


def new_hnsw():
    import faiss

    index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    return index


def bench_size(n: int, xb_all: np.ndarray, xq: np.ndarray, real_mask: np.ndarray, args) -> list[Row]:
    import faiss

    xb = xb_all[:n]
    rows: list[Row] = []
    t0 = time.perf_counter()
    _, truth = faiss.knn(xq, xb, K, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"\n--- N = {n:,}  (exact ground truth for {len(xq)} queries: {time.perf_counter() - t0:.1f} s)")
    print(HEADER)

    # numpy brute force: matrix product + argpartition
    def np1(q):
        s = xb @ q[0]
        part = np.argpartition(-s, K)[:K]
        return part[np.argsort(-s[part])]

    measure(
        rows,
        n,
        "numpy brute",
        "matmul+argpartition",
        np1,
        lambda q: numpy_search(xb, q),
        xq,
        truth,
        real_mask,
        args,
        0.0,
        xb.nbytes,
    )

    # FAISS exact
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(DIM)
    flat.add(xb)
    build = time.perf_counter() - t0
    measure(
        rows,
        n,
        "FAISS FlatIP",
        "exact",
        lambda q: flat.search(q, K),
        lambda q: flat.search(q, K)[1],
        xq,
        truth,
        real_mask,
        args,
        build,
        index_bytes(flat),
    )
    del flat
    gc.collect()

    # HNSW: one add() of the whole base (how an index is (re)built), then the same graph grown by 20 add()s
    # (how an archive grows); faiss inserts the upper-layer nodes of one add() first, which matters here
    hnsw_params = "M=32 efC=80"
    if args.no_hnsw:
        rows.append(Row(n, "FAISS HNSWFlat", hnsw_params, note="skipped (--no-hnsw)"))
        print_row(rows[-1])
    else:
        probe_n = min(n, 50_000)
        probe = new_hnsw()
        t0 = time.perf_counter()
        probe.add(xb[:probe_n])
        probe_s = time.perf_counter() - t0
        del probe
        proj = probe_s * (n / probe_n) ** 1.2  # measured here: 100k -> 1M costs ~16x
        if proj > args.build_budget:
            rows.append(
                Row(
                    n,
                    "FAISS HNSWFlat",
                    hnsw_params,
                    note=(
                        f"skipped: build projected at {proj:.0f} s > budget {args.build_budget:.0f} "
                        f"s (from {probe_n:,} "
                        f"in {probe_s:.1f} s)"
                    ),
                )
            )
            print_row(rows[-1])
        else:
            hnsw = new_hnsw()
            t0 = time.perf_counter()
            hnsw.add(xb)
            build = time.perf_counter() - t0
            size = index_bytes(hnsw)
            for ef in args.ef:
                hnsw.hnsw.efSearch = ef
                measure(
                    rows,
                    n,
                    "FAISS HNSWFlat",
                    f"{hnsw_params} ef={ef}",
                    lambda q: hnsw.search(q, K),
                    lambda q: hnsw.search(q, K)[1],
                    xq,
                    truth,
                    real_mask,
                    args,
                    build,
                    size,
                )
            del hnsw
            gc.collect()
            if not args.no_incremental:
                hnsw = new_hnsw()
                build, why = build_chunked(hnsw, xb, args.build_budget, chunks=20)
                if why:
                    rows.append(Row(n, "HNSW 20 adds", hnsw_params, note=why))
                    print_row(rows[-1])
                else:
                    size = index_bytes(hnsw)
                    for ef in args.ef_incremental:
                        hnsw.hnsw.efSearch = ef
                        measure(
                            rows,
                            n,
                            "HNSW 20 adds",
                            f"{hnsw_params} ef={ef}",
                            lambda q: hnsw.search(q, K),
                            lambda q: hnsw.search(q, K)[1],
                            xq,
                            truth,
                            real_mask,
                            args,
                            build,
                            size,
                        )
                del hnsw
                gc.collect()

    # IVF-Flat (spherical k-means on a sample of 50 vectors per list)
    nlist, capped = nlist_for(n)
    quantizer = faiss.IndexFlatIP(DIM)
    ivf = faiss.IndexIVFFlat(quantizer, DIM, nlist, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    ivf.train(train_sample(xb, nlist))
    kmeans_s = time.perf_counter() - t0
    ivf.add(xb)
    build = time.perf_counter() - t0
    size = index_bytes(ivf)
    if capped:
        print(f"{'':11}(IVF nlist{capped})")
    for nprobe in args.nprobe:
        if nprobe > nlist:
            continue
        ivf.nprobe = nprobe
        measure(
            rows,
            n,
            "FAISS IVFFlat",
            f"nlist={nlist} nprobe={nprobe}",
            lambda q: ivf.search(q, K),
            lambda q: ivf.search(q, K)[1],
            xq,
            truth,
            real_mask,
            args,
            build,
            size,
        )
    centroids = faiss.clone_index(quantizer)
    del ivf, quantizer
    gc.collect()

    # IVF-PQ (32 bytes a vector) + exact re-ranking of k_factor * k candidates (IndexRefineFlat keeps the vectors too);
    # it reuses the IVFFlat centroids, its build time counts their k-means
    if not args.no_pq:
        base = faiss.IndexIVFPQ(centroids, DIM, nlist, 32, 8, faiss.METRIC_INNER_PRODUCT)
        pq = faiss.IndexRefineFlat(base)
        t0 = time.perf_counter()
        pq.train(train_sample(xb, nlist))  # the coarse quantizer is trained: only the PQ codebooks are
        train_s = time.perf_counter() - t0 + kmeans_s
        build, why = build_chunked(pq, xb, max(1.0, args.build_budget - train_s), chunks=10)
        build += train_s
        if why:
            rows.append(Row(n, "FAISS IVFPQ+RF", f"nlist={nlist} PQ32", note=why))
            print_row(rows[-1])
        else:
            size = index_bytes(pq)
            for nprobe, kf in args.pq_params:
                if nprobe > nlist:
                    continue
                base.nprobe = nprobe
                pq.k_factor = kf
                measure(
                    rows,
                    n,
                    "FAISS IVFPQ+RF",
                    f"PQ32 nprobe={nprobe} kf={kf}",
                    lambda q: pq.search(q, K),
                    lambda q: pq.search(q, K)[1],
                    xq,
                    truth,
                    real_mask,
                    args,
                    build,
                    size,
                )
        del pq, base
    del centroids
    gc.collect()
    return rows


# ------------------------------------------------------------------------- exact-search threshold
def nice_floor(x: float) -> int:
    """Round down to 1, 2 or 5 x 10^k."""
    if x < 1:
        return 0
    e = 10 ** math.floor(math.log10(x))
    return int(max(m for m in (1, 2, 5, 10) if m * e <= x) * e)


def exact_sweep(xb_all: np.ndarray, xq: np.ndarray, args) -> list[tuple[int, float, float, float]]:
    import faiss

    sizes = [
        n for n in (5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000) if n <= len(xb_all)
    ]
    if len(xb_all) not in sizes:
        sizes.append(len(xb_all))
    out = []
    print(
        f"{'N':>9}  {'FlatIP p50 ms':>13} {'FlatIP p99 ms':>13} {'numpy p50 ms':>12}   (one query per call, 1 thread)"
    )
    for n in sizes:
        xb = xb_all[:n]
        flat = faiss.IndexFlatIP(DIM)
        flat.add(xb)
        p50, p99, _ = latency(lambda q: flat.search(q, K), xq, args.min_timed * 2, args.time_budget / 2)
        del flat

        def np1(q):
            s = xb @ q[0]
            part = np.argpartition(-s, K)[:K]
            return part[np.argsort(-s[part])]

        np50, _, _ = latency(np1, xq, args.min_timed, args.time_budget / 2)
        out.append((n, p50, p99, np50))
        print(f"{n:>9,}  {p50:13.3f} {p99:13.3f} {np50:12.3f}", flush=True)
        gc.collect()
    return out


def crossing(sweep, target_ms: float) -> float:
    """N at which FlatIP p50 reaches target_ms (log-log interpolation; linear extrapolation beyond the ends)."""
    ns = np.array([s[0] for s in sweep], float)
    ts = np.array([s[1] for s in sweep], float)
    if ts[0] >= target_ms:
        return ns[0] * target_ms / ts[0]
    for i in range(1, len(ns)):
        if ts[i] >= target_ms:
            f = (math.log(target_ms) - math.log(ts[i - 1])) / (math.log(ts[i]) - math.log(ts[i - 1]))
            return math.exp(math.log(ns[i - 1]) + f * (math.log(ns[i]) - math.log(ns[i - 1])))
    return ns[-1] * target_ms / ts[-1]  # latency ~ N


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        help="base sizes (default 10000 100000 1000000; --quick: 10000 100000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200 queries, fewer parameter values, no IVF-PQ, sizes 10k and 100k unless --sizes",
    )
    parser.add_argument(
        "--queries", type=int, default=None, help="queries (default 500, --quick 200), 80 of them from the real slides"
    )
    parser.add_argument(
        "--build-budget",
        type=float,
        default=300.0,
        help="seconds; HNSW / IVF-PQ builds projected over it are skipped (default 300)",
    )
    parser.add_argument("--no-hnsw", action="store_true", help="skip HNSW")
    parser.add_argument("--no-pq", action="store_true", help="skip IVF-PQ + refine")
    parser.add_argument("--no-incremental", action="store_true", help="skip the HNSW grown by 20 add() calls")
    parser.add_argument(
        "--exact-ms",
        type=float,
        default=1.0,
        help="FlatIP single-query p50 up to which exact search is used (default 1 ms)",
    )
    parser.add_argument(
        "--iso",
        type=float,
        default=1.0,
        help=(
            "scale of the isotropic noise (1 = calibrated on the real vectors; >1 = harder, higher intrinsic dimension)"
        ),
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for building and batch search (default 2)")
    args = parser.parse_args()
    sizes = sorted(args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]))
    n_query = args.queries or (200 if args.quick else 500)
    args.ef = [64, 128] if args.quick else [32, 64, 128, 256]
    args.nprobe = [16, 32] if args.quick else [8, 16, 32, 64]
    args.ef_incremental = [64, 256]
    args.pq_params = [(32, 16), (32, 64), (64, 64)]
    args.no_pq = args.no_pq or args.quick
    args.min_timed = 20 if args.quick else 40
    args.time_budget = 2.0 if args.quick else 5.0

    import faiss

    faiss.omp_set_num_threads(args.threads)
    t_all = time.perf_counter()
    print(
        (
            f"faiss {faiss.__version__}, numpy {np.__version__}, {args.threads} threads for builds and "
            "batch search; single-query latency on 1 thread"
        )
    )

    t0 = time.perf_counter()
    real, names = real_vectors()
    print(
        (
            f"real vectors: {len(real)} demo slides encoded with PathAlign-R "
            f"'embedded-r' in {time.perf_counter() - t0:.1f} "
            f"s (features cache {FEATURES.relative_to(ROOT)})"
        )
    )

    t0 = time.perf_counter()
    xb_all, xq, kind, mix = make_data(real, max(sizes), n_query, args.iso)
    real_mask = kind != "synthetic"
    print(
        f"synthetic base: {len(xb_all):,} x {DIM} float32 ({xb_all.nbytes / 2**20:.0f} "
        f"MiB) in {time.perf_counter() - t0:.1f} "
        f"s: {CENTRES} centres "
        f"= real + {CENTRE_SUB} x real covariance + {CENTRE_ISO * args.iso:.2f} x isotropic, vectors "
        f"= centre + {POINT_SUB} x real covariance + {POINT_ISO * args.iso:.2f} x isotropic; "
        f"the {len(real)} real vectors inside the first 10,000 rows (smaller sizes are prefixes)"
    )
    print(
        (
            f"queries: {len(xq)} = {int((kind == 'real').sum())} real (in "
            f"the base) + {int((kind == 'real+jitter').sum())} "
            f"real + jitter + {int((kind == 'synthetic').sum())} held-out synthetic; 'R@10 real' = the "
            "80 real-derived"
        )
    )
    print("shape check, real vs synthetic (40-vector samples):")
    print_shape(real, xb_all)

    rows: list[Row] = []
    for n in sizes:
        rows += bench_size(n, xb_all, xq, real_mask, args)

    print("\n=== exact-search sweep: FlatIP single-query latency vs N (prefixes of the same base)")
    sweep = exact_sweep(xb_all, xq, args)
    n1 = crossing(sweep, args.exact_ms)
    n2 = crossing(sweep, 2 * args.exact_ms)
    exact_max = nice_floor(n1)

    print(
        (
            f"\n=== goal at {max(sizes):,}: p50 < {GOAL_MS:g} ms and recall@10 >= {GOAL_RECALL} (all queries); "
            "'real' = also on the 80 real-derived queries"
        )
    )
    for r in (r for r in rows if r.size == max(sizes)):
        if r.note:
            print(f"  {'-':4} {'':4} {r.method:15} {r.params:26} {r.note}")
        else:
            real_ok = "real" if r.meets and r.recall_real >= GOAL_RECALL else ""
            print(
                (
                    f"  {'MEET' if r.meets else 'no':4} {real_ok:4} {r.method:15} {r.params:26} p50 {r.p50:7.3f} "
                    f"ms  R@10 {r.recall:.3f} (real {r.recall_real:.3f})  build "
                    f"{r.build_s:6.1f} s  {r.nbytes / 2**20:7.1f} "
                    "MB"
                )
            )

    print("\n=== recommendation")
    print(
        (
            f"FlatIP single-query p50 reaches {args.exact_ms:g} ms at N ~ {n1:,.0f} and {2 * args.exact_ms:g} "
            f"ms at N ~ {n2:,.0f} (1 thread)"
        )
    )
    print(f"EXACT_MAX = {exact_max:_}   # exact search (IndexFlatIP) up to here: p50 <= {args.exact_ms:g} ms, recall 1")
    above = [r for r in rows if r.size > exact_max and not r.note and r.method not in ("numpy brute", "FAISS FlatIP")]
    by_size = sorted({r.size for r in above})
    print(
        (
            f"above it, per index: the cheapest setting with p50 < {GOAL_MS:g} ms and R@10 >= {GOAL_RECALL} "
            "on all queries AND on the real-derived ones, at every measured "
            f"size > EXACT_MAX ({', '.join(f'{s:,}' for s in by_size)})"
        )
    )

    def key(r: Row) -> str:  # the setting, independent of N (IVF nlist follows N)
        return (
            r.params.split(" nlist=")[0]
            if r.method == "FAISS IVFPQ+RF"
            else " ".join(w for w in r.params.split() if not w.startswith("nlist="))
        )

    best = {}
    for fam in dict.fromkeys(r.method for r in above):
        for setting in dict.fromkeys(key(r) for r in above if r.method == fam and r.size == max(sizes)):
            at = sorted((r for r in above if r.method == fam and key(r) == setting), key=lambda r: r.size)
            if len(at) == len(by_size) and all(r.meets and r.recall_real >= GOAL_RECALL for r in at):
                best[fam] = at
                break
        else:
            print(f"  {fam:15} none of its settings qualifies")
    for fam, at in best.items():
        figs = "; ".join(
            (
                f"N={r.size:,}: p50 {r.p50:.3f} ms, p99 {r.p99:.3f} ms, R@10 "
                f"{r.recall:.3f} (real {r.recall_real:.3f}), "
                f"build {r.build_s:.1f} s, {r.nbytes / 2**20:.0f} MB"
            )
            for r in at
        )
        print(f"  {fam:15} {key(at[-1]):22} {figs}")
    pick = {f: at for f, at in best.items() if f != "HNSW 20 adds"}  # that one is the same index, grown differently
    if pick:
        fam, at = min(pick.items(), key=lambda kv: kv[1][-1].p50)
        print(
            (
                f"RECOMMENDED above EXACT_MAX: {fam} {at[-1].params} (lowest p50 at {max(sizes):,} among the "
                "qualifying settings)"
            )
        )
        for other, o in pick.items():
            if other != fam:
                print(
                    (
                        f"  alternative: {other} {o[-1].params} (p50 {o[-1].p50:.3f} ms, build {o[-1].build_s:.0f} "
                        f"s, {o[-1].nbytes / 2**20:.0f} MB at {max(sizes):,})"
                    )
                )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.2f} GiB, total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
