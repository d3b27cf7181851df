"""FAISS indexes of unit vectors whose ids are the database's row ids; which kind to use, and why.

All kinds search by inner product, which on L2-normalised vectors is cosine similarity.
faiss is imported inside functions, so that importing this package (the search dock does) stays quick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write

# Up to this many vectors "auto" searches exactly (IndexFlatIP): exact, no training, and fast
# enough at this size. Above it, IVF. benchmarks/ measures where the crossover really lies.
# benchmarks/bench_search.py: exact FlatIP single-query p50 reaches 1 ms near 27k vectors (dim 256, 1 thread)
EXACT_MAX = 20_000
IVF_NLIST_PER_SQRT_N = 4  # nlist ~ 4 * sqrt(N): the usual rule of thumb for IVF
IVF_MIN_POINTS_PER_LIST = 39  # faiss k-means wants >= 39 training points per centroid
IVF_NPROBE_FRACTION = (
    1 / 64
)  # lists probed per query, as a fraction of nlist (1M: nlist 4000, nprobe 62: p50 ~1.5 ms, recall@10 0.998)...
IVF_NPROBE_MIN = 32  # ...but never fewer than this
IVF_RETRAIN_FACTOR = 2.0  # retrain when the ideal nlist drifts this far from the trained one
HNSW_M = 32  # graph neighbours per node
HNSW_EF_SEARCH = 128  # candidate list at search time (recall vs speed)
HNSW_EF_CONSTRUCTION = 80  # candidate list at build time (bench_search.py: recall 0.995 at 1M with efSearch 128)
KINDS = ("flat", "ivf", "hnsw")


@dataclass(frozen=True)
class IndexPlan:
    """Which index to build for N vectors, and why, in words for LibraryInfo."""

    kind: str  # "flat", "ivf" or "hnsw"
    nlist: int  # IVF lists; 0 unless kind == "ivf"
    reason: str  # why this kind, e.g. "auto: 1,200 vectors <= EXACT_MAX 50,000: exact search"


def ivf_nlist(n: int) -> int:
    """Lists for n vectors: ~4 sqrt(n), but few enough that k-means has enough points per list."""
    return max(1, min(round(IVF_NLIST_PER_SQRT_N * math.sqrt(n)), n // IVF_MIN_POINTS_PER_LIST))


def ivf_nprobe(nlist: int) -> int:
    return min(nlist, max(IVF_NPROBE_MIN, math.ceil(nlist * IVF_NPROBE_FRACTION)))


def plan_index(requested: str, n: int) -> IndexPlan:
    """The index kind for ``n`` vectors under the library's ``requested`` type ("auto" or a kind)."""
    if requested == "auto":
        if n <= EXACT_MAX:
            return IndexPlan("flat", 0, f"auto: {n:,} vectors <= EXACT_MAX {EXACT_MAX:,}: exact search (IndexFlatIP)")
        nlist = ivf_nlist(n)
        ivf = f"IVF (IndexIVFFlat, nlist={nlist}, nprobe={ivf_nprobe(nlist)})"
        why = f"auto: {n:,} vectors > EXACT_MAX {EXACT_MAX:,}: {ivf}"
        return IndexPlan("ivf", nlist, why)
    if requested == "flat":
        return IndexPlan("flat", 0, "requested: flat (exact IndexFlatIP)")
    if requested == "hnsw":
        why = f"requested: hnsw (IndexHNSWFlat, M={HNSW_M}, efSearch={HNSW_EF_SEARCH}; rebuilt on update/remove)"
        return IndexPlan("hnsw", 0, why)
    if requested == "ivf":
        if n == 0:
            why = "requested: ivf, but the library is empty (nothing to train on): exact flat until slides are added"
            return IndexPlan("flat", 0, why)
        nlist = ivf_nlist(n)
        return IndexPlan("ivf", nlist, f"requested: ivf (IndexIVFFlat, nlist={nlist}, nprobe={ivf_nprobe(nlist)})")
    raise ValueError(f"index_type {requested!r} is not known; expected 'auto', {', '.join(map(repr, KINDS))}")


def needs_rebuild(index: VectorIndex, plan: IndexPlan) -> bool:
    """True when ``index`` no longer fits ``plan``: another kind, or IVF lists far from the ideal count."""
    if index.kind != plan.kind:
        return True
    if plan.kind == "ivf":
        ratio = plan.nlist / max(index.nlist, 1)
        return ratio > IVF_RETRAIN_FACTOR or ratio < 1 / IVF_RETRAIN_FACTOR
    return False


class VectorIndex:
    """One FAISS index; its ids are row ids of the database (IndexIDMap2, or IVF's own ids)."""

    def __init__(self, index, kind: str):
        self.index = index  # the faiss index (owns any wrapped index or quantizer)
        self.kind = kind  # "flat", "ivf" or "hnsw"
        self._configure()

    @classmethod
    def build(cls, plan: IndexPlan, dim: int, ids: np.ndarray, vecs: np.ndarray) -> VectorIndex:
        """A new index of kind ``plan.kind`` holding ``vecs`` (N, dim) under ``ids`` (N,); IVF trains on them."""
        import faiss

        if plan.kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif plan.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index = faiss.IndexIDMap2(inner)
        elif plan.kind == "ivf":
            # IVF stores ids natively; IndexIDMap2 around it would mis-translate ids after a removal.
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, plan.nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(np.ascontiguousarray(vecs, dtype=np.float32))
        else:
            raise ValueError(f"index kind {plan.kind!r} is not known; expected one of {KINDS}")
        built = cls(index, plan.kind)
        built.add(ids, vecs)
        return built

    @classmethod
    def read(cls, path: Path) -> VectorIndex:
        """Read a file written by ``write``; raises (RuntimeError, ValueError, OSError) if it is not one."""
        import faiss

        index = faiss.read_index(str(path))
        if isinstance(index, faiss.IndexIDMap2):
            inner = faiss.downcast_index(index.index)
            if isinstance(inner, faiss.IndexHNSWFlat):
                kind = "hnsw"
            elif isinstance(inner, faiss.IndexFlat):
                kind = "flat"
            else:
                raise ValueError(f"unexpected index inside IndexIDMap2: {type(inner).__name__}")
        elif isinstance(index, faiss.IndexIVFFlat):
            kind = "ivf"
        else:
            raise ValueError(f"unexpected index type {type(index).__name__}")
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError("index does not use inner-product search")
        return cls(index, kind)

    def _configure(self) -> None:
        """Search settings are set here, not trusted from the file, so changing the constants takes effect."""
        import faiss

        if self.kind == "ivf":
            self.index.nprobe = ivf_nprobe(self.index.nlist)
            if self.index.direct_map.type != faiss.DirectMap.Hashtable:
                self.index.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct(id) for checks
        elif self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = HNSW_EF_SEARCH

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.kind == "ivf" else 0

    @property
    def can_remove(self) -> bool:
        """HNSW graphs cannot delete nodes: removing or updating means rebuilding from stored vectors."""
        return self.kind != "hnsw"

    def ids(self) -> np.ndarray:
        """(N,) int64 ids held, ascending."""
        import faiss

        if self.kind == "ivf":
            lists = self.index.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(self.index.nlist)
                if lists.list_size(i)
            ]
            held = np.concatenate(parts) if parts else np.empty(0, np.int64)
        else:
            held = faiss.vector_to_array(self.index.id_map)
        return np.sort(held.astype(np.int64))

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids):
            vecs = np.ascontiguousarray(vecs, dtype=np.float32)  # (N, E)
            self.index.add_with_ids(vecs, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not self.can_remove:
            raise ValueError("an HNSW index cannot remove vectors; rebuild it from the stored vectors")
        if len(ids):
            self.index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64))

    def reconstruct(self, row_id: int) -> np.ndarray:
        return self.index.reconstruct(int(row_id))

    def search(self, query: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores (k',), ids (k',)) best first for a unit ``query`` (E,), among ``subset`` ids if given."""
        import faiss

        n = self.ntotal if subset is None else len(subset)
        k = min(k, n)
        if k <= 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        sel = None if subset is None else faiss.IDSelectorBatch(np.ascontiguousarray(subset, dtype=np.int64))
        if self.kind == "ivf":
            # asking for (nearly) everything: probe every list, or far lists would be missed
            nprobe = self.index.nlist if k >= self.ntotal else self.index.nprobe
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(HNSW_EF_SEARCH, k))
        else:
            params = faiss.SearchParameters(sel=sel)
        scores, found = self.index.search(query.reshape(1, -1).astype(np.float32), k, params=params)  # (1, k)
        keep = found[0] >= 0  # faiss pads with -1 when fewer than k are reachable
        return scores[0][keep], found[0][keep].astype(np.int64)

    def write(self, path: Path) -> None:
        """Write atomically: a temporary file in the same folder (0o600, from mkstemp), fsync, rename."""
        import faiss

        path = Path(path)
        with atomic_write(path, mode=0o600) as tmp:
            faiss.write_index(self.index, str(tmp))
