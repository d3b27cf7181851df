"""A slide library: one folder holding a SQLite database (the truth) and FAISS indexes (derived).

    folder/ (0o700)
      library.sqlite   meta + one row per slide, vectors included (0o600: reports can identify patients)
      slides.faiss     slide vectors; FAISS ids are the database's row ids
      reports.faiss    report text vectors of the slides that have one

Each slide is written in its own SQLite transaction, which also counts the database's "generation";
after each ``add``/``remove`` the FAISS files are rewritten atomically and the generation they reflect
is recorded with them. A crash in between leaves index files older than the database: ``open`` notices
(generation, ids, dim, a sample of vectors) and rebuilds them from the stored vectors, saying so.
Index writes hold SQLite's write lock, so several processes may add to one library; an index that
another process's change made stale is rebuilt before it is written. A long-lived reader sees other
processes' changes when it opens the library again.
"""

from __future__ import annotations

import sqlite3
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_pathalign.core.clock import utc_now
from napari_pathalign.index import schema
from napari_pathalign.index.consistency import check_index_file, remove_stale_temp_files
from napari_pathalign.index.folder import INDEX_FILES, make_folder, open_database
from napari_pathalign.index.records import Hit, LibraryError, LibraryInfo, SlideRecord, check_record, normalised
from napari_pathalign.index.schema import DB_NAME, SCHEMA_VERSION, TARGETS
from napari_pathalign.index.vectors import VectorIndex, needs_rebuild, plan_index
from napari_pathalign.index.vote import majority_vote

FILTER_EXACT_MAX = 20_000  # a filter leaving at most this many slides is scored exactly from stored vectors


class Library:
    """Slide vectors, report vectors and slide metadata in one folder; search by inner product.

    Make one with ``Library.create`` or ``Library.open``; use it as a context manager or ``close()`` it.
    Safe to share between threads (one lock serialises database and index access).
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection, meta: dict):
        """Internal: use ``create``, ``open`` or ``open_or_create``."""
        self.path = folder  # the library folder
        self.model = meta["model"]
        self.model_hash = meta["model_hash"]
        self.encoder = meta["encoder"]
        self.encoder_hash = meta["encoder_hash"]
        self.dim = int(meta["dim"])
        self.requested_index_type = meta["index_type"]
        self.created = meta["created"]
        self.schema_version = int(meta["schema_version"])
        self.repaired: str | None = None  # what open() had to rebuild, in words; None if nothing
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        self._indexes: dict[str, VectorIndex | None] = {}
        self._dirty: dict[str, str | None] = dict.fromkeys(TARGETS)  # None, "write" or "rebuild"
        self._index_gen: dict[str, int] = dict.fromkeys(TARGETS, -1)  # database generation each index reflects
        self._deferred = 0  # depth of nested batch() blocks; index files are written when it returns to 0

    # ---- creating and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls, folder, *, model: str, model_hash: str, encoder: str, encoder_hash: str, dim: int, index_type: str = "auto"
    ) -> Library:
        """A new, empty library in ``folder`` (new or empty) for vectors of one model over one encoder."""
        meta = dict(
            schema_version=SCHEMA_VERSION, model=model, model_hash=model_hash, encoder=encoder,
            encoder_hash=encoder_hash, dim=dim, index_type=index_type, created=utc_now(),
        )  # fmt: skip
        make_folder(Path(folder), meta)  # checks the settings, then the folder
        return cls.open(folder)

    @classmethod
    def open(cls, folder) -> Library:
        """Open an existing library; indexes that disagree with the database are rebuilt (see ``repaired``)."""
        folder = Path(folder)
        conn, meta = open_database(folder)
        lib = cls(folder, conn, meta)
        try:
            remove_stale_temp_files(folder, INDEX_FILES.values())
            lib._load_indexes()
        except BaseException:
            lib.close()
            raise
        return lib

    @classmethod
    def open_or_create(
        cls, folder, *, model: str, model_hash: str, encoder: str, encoder_hash: str, dim: int, index_type: str = "auto"
    ) -> Library:
        """Open the library in ``folder`` and check it holds this model's vectors, or create it there if new/empty."""
        folder = Path(folder)
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            return cls.create(
                folder, model=model, model_hash=model_hash, encoder=encoder, encoder_hash=encoder_hash, dim=dim,
                index_type=index_type,
            )  # fmt: skip
        lib = cls.open(folder)
        try:
            lib.check_model(model, model_hash, encoder, encoder_hash, dim)
        except LibraryError:
            lib.close()
            raise
        return lib

    def check_model(self, model: str, model_hash: str, encoder: str, encoder_hash: str, dim: int) -> None:
        """Raise LibraryError naming both sides unless this library holds vectors of exactly this model."""
        ours = dict(model=self.model, model_hash=self.model_hash, encoder=self.encoder, encoder_hash=self.encoder_hash)
        ours["dim"] = self.dim
        theirs = dict(model=model, model_hash=model_hash, encoder=encoder, encoder_hash=encoder_hash, dim=dim)
        differ = [key for key in ours if str(ours[key]) != str(theirs[key])]
        if differ:

            def side(d):
                return (
                    f"model {d['model']!r} (hash {d['model_hash']}) over encoder {d['encoder']!r} "
                    f"(hash {d['encoder_hash']}), dim {d['dim']}"
                )

            raise LibraryError(
                f"library {self.path} holds vectors of {side(ours)}; this model is {side(theirs)}. They differ in "
                f"{', '.join(differ)}, so their vectors cannot be compared: open a library built with this model, "
                "or create a new one"
            )

    # ---- indexes: load, check, repair, write ------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LibraryError(f"library {self.path} is closed; open it again with Library.open")
        return self._conn

    def _load_indexes(self) -> None:
        """Trust each index file only if it is current and agrees with the database; else rebuild and say so."""
        conn = self._db()
        current = schema.generation(conn)
        problems = {}
        for target in TARGETS:
            written_at = schema.indexed_generation(conn, target)
            if written_at != current:
                index, problem = (
                    None,
                    (
                        f"was written at database change {written_at} but the database is at change {current} "
                        "(a write was interrupted)"
                    ),
                )
            else:
                index, problem = check_index_file(self.path / INDEX_FILES[target], conn, target, self.dim)
            self._indexes[target] = index
            self._index_gen[target] = current if problem is None else -1
            if problem is not None:
                problems[target] = problem
                self._dirty[target] = "rebuild"
        if not problems:
            return
        unsaved = ""
        try:
            self._flush()
        except LibraryError as err:  # e.g. a read-only folder: _flush repaired them in memory only
            unsaved = f" (but could not save: {err.__cause__ or err}; it will be rebuilt again on the next open)"
        self.repaired = "; ".join(
            f"{INDEX_FILES[t]} {problem}; rebuilt from the {self._indexes[t].ntotal} vectors in {DB_NAME}{unsaved}"
            for t, problem in problems.items()
        )
        warnings.warn(f"slide library {self.path}: {self.repaired}", UserWarning, stacklevel=3)

    def _rebuild(self, target: str) -> VectorIndex:
        """A fresh index of ``target`` from the vectors stored in the database (its kind chosen anew)."""
        ids, vecs = schema.vectors(self._db(), target, self.dim)
        return VectorIndex.build(plan_index(self.requested_index_type, len(ids)), self.dim, ids, vecs)

    def _flush(self) -> None:
        """Bring the index files up to the database's generation: rebuild where needed, write what changed.

        Runs inside one write transaction (BEGIN IMMEDIATE): index files and the generation they are
        recorded at change together, and no other process can commit slides in between.
        """
        conn = self._db()
        try:
            with schema.transaction(conn):
                current = schema.generation(conn)
                for target in TARGETS:
                    state = self._dirty[target]
                    if self._index_gen[target] != current:
                        state = "rebuild"  # the database changed behind this index (another process)
                    if state is None and schema.indexed_generation(conn, target) == current:
                        continue
                    if state is not None:
                        plan = plan_index(self.requested_index_type, schema.count(conn, target))
                        if state == "rebuild" or needs_rebuild(self._indexes[target], plan):
                            self._indexes[target] = self._rebuild(target)
                        self._indexes[target].write(self.path / INDEX_FILES[target])
                    schema.set_indexed_generation(conn, target, current)
                    self._index_gen[target] = current
                    self._dirty[target] = None
        except (OSError, sqlite3.Error) as err:
            for target in TARGETS:  # keep this session's searches true even though the files are not
                if self._dirty[target] == "rebuild" or self._indexes[target] is None:
                    self._indexes[target] = self._rebuild(target)
                    self._index_gen[target], self._dirty[target] = -1, "write"
            raise LibraryError(
                f"the slide database is saved, but the index files could not be written ({err}); searches in this "
                "session still see every slide, and the files are rebuilt when the library is next opened"
            ) from err

    # ---- writing ------------------------------------------------------------------------------

    def add(self, records: list[SlideRecord]) -> list[int]:
        """Insert new slides, or update the row with the same fingerprint (same id); returns the row ids.

        All records are checked before anything is written; then each is one SQLite transaction,
        and the index files are rewritten once at the end. Adding slide by slide? Wrap the loop in
        ``with lib.batch():`` so the files are written once, not after every slide.
        """
        if isinstance(records, SlideRecord):
            raise ValueError("add takes a list of SlideRecord; wrap a single record in a list")
        checked = [check_record(rec, self.dim) for rec in records]
        if not checked:
            return []
        row_ids = []
        with self._lock:
            conn = self._db()
            try:
                for rec in checked:
                    row_id, updated, generations = schema.upsert(conn, rec, utc_now())
                    row_ids.append(row_id)
                    self._index_one(row_id, rec, updated, generations)
            finally:
                if not self._deferred:
                    self._flush()
        return row_ids

    def _index_one(self, row_id: int, rec: SlideRecord, updated: bool, generations: tuple[int, int]) -> None:
        """Mirror one committed row into the in-memory indexes (files are written by _flush)."""
        one = np.array([row_id], dtype=np.int64)
        before, after = generations
        for target, vector in (("slides", rec.vector), ("reports", rec.report_vector)):
            index = self._indexes[target]
            if self._dirty[target] == "rebuild" or self._index_gen[target] != before:
                self._dirty[target] = "rebuild"  # rebuilt from the database by _flush
                continue
            if updated and not index.can_remove:
                self._dirty[target] = "rebuild"
                continue
            self._index_gen[target] = after
            if updated:
                index.remove(one)
            if vector is not None:
                index.add(one, vector[None])  # (1, E)
            if updated or vector is not None:
                self._dirty[target] = "write"

    def remove(self, ids_or_fingerprints) -> list[int]:
        """Remove slides by row id (int) or fingerprint (str); all or nothing. Returns the removed row ids.

        Raises LibraryError, removing nothing, if any of them is not in the library. HNSW indexes
        cannot delete, so with index_type="hnsw" each remove rebuilds them from the stored vectors.
        """
        keys = ids_or_fingerprints
        if isinstance(keys, (str, int, np.integer)):
            keys = [keys]
        with self._lock:
            conn = self._db()
            found, unknown = schema.resolve(conn, list(keys))
            if unknown:
                more = " ..." if len(unknown) > 10 else ""
                raise LibraryError(f"not in library {self.path}: {unknown[:10]!r}{more}; nothing was removed")
            found = sorted(set(found))
            if not found:
                return []
            before, after = schema.delete(conn, found)
            gone = np.array(found, dtype=np.int64)
            for target in TARGETS:
                index = self._indexes[target]
                if index.can_remove and self._dirty[target] != "rebuild" and self._index_gen[target] == before:
                    index.remove(gone)
                    self._index_gen[target] = after
                    self._dirty[target] = "write"
                else:
                    self._dirty[target] = "rebuild"
            if not self._deferred:
                self._flush()
        return found

    @contextmanager
    def batch(self):
        """Write the index files once, at the end of the block; each ``add`` still commits its slides at once.

        For building a library slide by slide: outside a batch every ``add`` rewrites the index files
        (O(N) each). A crash inside the batch leaves files older than the database, which the next
        ``open`` rebuilds. Searches inside the block see the new slides (with HNSW, updated ones after it).
        """
        with self._lock:
            self._deferred += 1
        try:
            yield self
        finally:
            with self._lock:
                self._deferred -= 1
                if not self._deferred:
                    self._flush()

    # ---- reading ------------------------------------------------------------------------------

    def search(self, vector, k: int = 10, target: str = "slides", filters: dict | None = None) -> list[Hit]:
        """The ``k`` slides whose ``target`` vectors best match ``vector`` (E,), best first.

        ``target="slides"`` compares with slide vectors (slide->slide, or text->slide when ``vector`` is a
        text embedding); ``"reports"`` with report vectors (slide->report). ``filters`` keys: label, site
        (exact; None matches missing), report_contains, path_contains (case-insensitive substring).
        A filter that matches nothing, or an empty library, gives [].
        """
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        query = normalised(vector, self.dim, "query vector")  # (E,)
        where, _ = schema.filter_clause(filters)  # checks the keys before anything runs
        with self._lock:
            conn = self._db()
            if where:
                subset = schema.filtered_ids(conn, target, filters)
                if len(subset) == 0:
                    return []
                if len(subset) <= FILTER_EXACT_MAX:
                    # exact on the few that pass: IVF/HNSW probing would miss most of a small subset
                    ids, vecs = schema.vectors(conn, target, self.dim, subset)  # (M,), (M, E)
                    scores = vecs @ query  # (M,)
                    order = np.argsort(-scores, kind="stable")[:k]
                    scores, found = scores[order], ids[order]
                else:
                    scores, found = self._indexes[target].search(query, int(k), subset)
            else:
                scores, found = self._indexes[target].search(query, int(k))
            rows = schema.hit_rows(conn, found)
        hits = []
        for score, row_id in zip(scores, found):
            row = rows.get(int(row_id))
            if row is None:
                continue  # removed by another process since this one loaded its index
            _, path, fingerprint, label, site, report, thumbnail, features_path = row
            hits.append(Hit(
                id=int(row_id), score=float(score), rank=len(hits) + 1, path=path, fingerprint=fingerprint,
                label=label, site=site, report=report, thumbnail_png=bytes(thumbnail),
                features_path=features_path, target=target,
            ))  # fmt: skip
        return hits

    def get(self, row_id) -> SlideRecord:
        """The full record (vectors included) for a row id, or a fingerprint (str); KeyError if absent."""
        with self._lock:
            rec = schema.record(self._db(), row_id, self.dim)
        if rec is None:
            raise KeyError(f"no slide {row_id!r} in library {self.path}")
        return rec

    def vectors(self, target: str = "slides") -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, E) float32), ascending by id, read from the database."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        with self._lock:
            return schema.vectors(self._db(), target, self.dim)

    def __len__(self) -> int:
        with self._lock:
            return schema.count(self._db())

    def info(self) -> LibraryInfo:
        """Counts, model identity, the slide index's type and why, size on disk, and any repair."""
        with self._lock:
            count, reports = schema.count(self._db()), schema.count(self._db(), "reports")
            index = self._indexes["slides"]
        plan = plan_index(self.requested_index_type, count)
        reason = plan.reason
        if index.kind != plan.kind:
            reason = f"{index.kind} as built earlier; the next add or remove switches to {plan.kind}. {plan.reason}"
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return LibraryInfo(
            path=str(self.path), count=count, reports_count=reports, index_type=index.kind, index_reason=reason,
            requested_index_type=self.requested_index_type, dim=self.dim, model=self.model,
            model_hash=self.model_hash, encoder=self.encoder, encoder_hash=self.encoder_hash,
            created=self.created, schema_version=self.schema_version, size_bytes=size, repaired=self.repaired,
        )  # fmt: skip

    @staticmethod
    def majority_vote(hits: list[Hit], field: str = "label") -> tuple[object | None, float, dict]:
        """(winner or None, agreement in [0, 1], counts): see ``index.vote.majority_vote``."""
        return majority_vote(hits, field)

    # ---- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"{len(self)} slides"
        return f"Library({str(self.path)!r}, {state}, model={self.model!r}, dim={self.dim})"
