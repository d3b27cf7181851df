"""The library's SQLite database: tables, metadata, rows <-> records, and filters.

The database is the source of truth: it holds every slide's vectors, so the FAISS indexes can
always be rebuilt from it. Every value goes in as a ``?`` parameter; the only SQL text built at
run time is from fixed column names in this file, never from user input.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_pathalign.index.records import SlideRecord

SCHEMA_VERSION = 1  # bump when the tables change; open() refuses databases from a newer version
DB_NAME = "library.sqlite"
META_KEYS = ("schema_version", "model", "model_hash", "encoder", "encoder_hash", "dim", "index_type", "created")
FILTER_KEYS = ("label", "site", "report_contains", "path_contains")
TARGETS = ("slides", "reports")
# the column holding each target's vector: a slide's image vector, or its report's text vector
VECTOR_COLUMN = {"slides": "vector", "reports": "report_vector"}
GENERATION = "generation"  # meta key: write transactions so far
INDEXED = {t: f"indexed_generation:{t}" for t in TARGETS}  # meta keys: generation each index file reflects
_CHUNK = 500  # ids per "IN (?, ...)" query, well under SQLite's parameter limit

# AUTOINCREMENT: a removed slide's id is never reused, so an id held by the UI or by a reader
# process's older index can never point at a different slide.
_CREATE = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE slides (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        path TEXT NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        format TEXT NOT NULL,
        mpp REAL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        thumbnail BLOB NOT NULL,
        vector BLOB NOT NULL,
        report TEXT,
        report_vector BLOB,
        label TEXT,
        site TEXT,
        features_path TEXT,
        extra TEXT NOT NULL DEFAULT '{}',
        added TEXT NOT NULL
    )""",
    "CREATE INDEX slides_label ON slides (label)",
    "CREATE INDEX slides_site ON slides (site)",
)
_RECORD_COLUMNS = (
    "id, path, fingerprint, format, mpp, width, height, thumbnail, vector, report, report_vector, "
    "label, site, features_path, extra, added"
)
HIT_COLUMNS = "id, path, fingerprint, label, site, report, thumbnail, features_path"


def connect(path: Path, create: bool = False) -> sqlite3.Connection:
    """Open ``path`` (never creating it unless asked), in autocommit mode so transactions are explicit.

    ``check_same_thread=False``: napari workers search from another thread; ``Library`` serialises
    access with its own lock.
    """
    uri = Path(path).resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA synchronous = FULL")  # a committed slide survives a crash or power loss
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection):
    """One write transaction: all of it commits, or none of it does (also on kill -9, by SQLite's journal)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_tables(conn: sqlite3.Connection, meta: dict) -> None:
    with transaction(conn):
        for sql in _CREATE:
            conn.execute(sql)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(k, str(meta[k])) for k in META_KEYS])
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (GENERATION, "0"))
        for target in TARGETS:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (INDEXED[target], "0"))


def generation(conn: sqlite3.Connection) -> int:
    """How many write transactions the slides table has seen; an index file is current when it was
    written at this generation (``indexed_generation``). Ids alone cannot tell: an update keeps its id."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (GENERATION,)).fetchone()
    return int(row[0]) if row else 0


def indexed_generation(conn: sqlite3.Connection, target: str) -> int:
    """The generation the ``target`` index file was last written at (-1: unknown)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEXED[target],)).fetchone()
    return int(row[0]) if row else -1


def set_indexed_generation(conn: sqlite3.Connection, target: str, value: int) -> None:
    """Call inside the transaction that also writes the index file, so both change together."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (INDEXED[target], str(value)))


def _bump(conn: sqlite3.Connection) -> tuple[int, int]:
    """(generation before, after) of the write transaction this is called in."""
    before = generation(conn)
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (GENERATION, str(before + 1)))
    return before, before + 1


def read_meta(conn: sqlite3.Connection) -> dict:
    """The meta table as a dict (raises sqlite3 errors for a database that is not ours or is corrupt)."""
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def check_tables(conn: sqlite3.Connection) -> None:
    """Raise a sqlite3 error unless the slides table has every column this version reads."""
    conn.execute(f"SELECT {_RECORD_COLUMNS} FROM slides LIMIT 1").fetchall()


def count(conn: sqlite3.Connection, target: str = "slides") -> int:
    return conn.execute(f"SELECT COUNT(*) FROM slides WHERE {VECTOR_COLUMN[target]} IS NOT NULL").fetchone()[0]


def ids(conn: sqlite3.Connection, target: str) -> np.ndarray:
    """(N,) int64 row ids that have a vector for ``target``, ascending."""
    rows = conn.execute(f"SELECT id FROM slides WHERE {VECTOR_COLUMN[target]} IS NOT NULL ORDER BY id").fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


def vectors(conn: sqlite3.Connection, target: str, dim: int, subset=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) int64, vectors (N, dim) float32) for ``target``, ascending by id; all rows or ``subset``."""
    col = VECTOR_COLUMN[target]
    if subset is None:
        rows = conn.execute(f"SELECT id, {col} FROM slides WHERE {col} IS NOT NULL ORDER BY id").fetchall()
    else:
        rows = []
        subset = sorted(int(i) for i in subset)
        for start in range(0, len(subset), _CHUNK):
            chunk = subset[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id, {col} FROM slides WHERE {col} IS NOT NULL AND id IN ({marks}) ORDER BY id"
            rows += conn.execute(sql, chunk).fetchall()
    out_ids = np.array([r[0] for r in rows], dtype=np.int64)
    vecs = np.empty((len(rows), dim), dtype=np.float32)  # (N, E)
    for i, (_, blob) in enumerate(rows):
        vecs[i] = blob_to_vector(blob, dim)
    return out_ids, vecs


def vector_to_blob(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").tobytes()


def blob_to_vector(blob: bytes, dim: int) -> np.ndarray:
    v = np.frombuffer(blob, dtype="<f4")
    if v.shape != (dim,):
        raise sqlite3.DatabaseError(f"stored vector has {v.size} values; the library's dim is {dim}")
    return v.astype(np.float32)


def upsert(conn: sqlite3.Connection, rec: SlideRecord, now: str) -> tuple[int, bool, tuple[int, int]]:
    """Insert ``rec`` or update the row with its fingerprint, in one transaction.

    Returns (row id, whether it was an update, (generation before, after)).
    """
    values = (
        rec.path, rec.format, rec.mpp, rec.width, rec.height, rec.thumbnail_png, vector_to_blob(rec.vector),
        rec.report, None if rec.report_vector is None else vector_to_blob(rec.report_vector),
        rec.label, rec.site, rec.features_path, json.dumps(rec.extra),
    )  # fmt: skip
    with transaction(conn):
        generations = _bump(conn)
        row = conn.execute("SELECT id FROM slides WHERE fingerprint = ?", (rec.fingerprint,)).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE slides SET path = ?, format = ?, mpp = ?, width = ?, height = ?, thumbnail = ?, vector = ?, "
                "report = ?, report_vector = ?, label = ?, site = ?, features_path = ?, extra = ? WHERE id = ?",
                (*values, row[0]),
            )
            return int(row[0]), True, generations
        cur = conn.execute(
            "INSERT INTO slides (path, format, mpp, width, height, thumbnail, vector, report, report_vector, "
            "label, site, features_path, extra, fingerprint, added) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, rec.fingerprint, now),
        )
        return int(cur.lastrowid), False, generations


def resolve(conn: sqlite3.Connection, keys) -> tuple[list[int], list]:
    """Row ids for ints (ids) and strings (fingerprints): (found ids, keys that match nothing)."""
    found, unknown = [], []
    for key in keys:
        if isinstance(key, str):
            row = conn.execute("SELECT id FROM slides WHERE fingerprint = ?", (key,)).fetchone()
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            row = conn.execute("SELECT id FROM slides WHERE id = ?", (int(key),)).fetchone()
        else:
            raise ValueError(f"expected row ids (int) or fingerprints (str), got {key!r}")
        if row is None:
            unknown.append(key)
        else:
            found.append(int(row[0]))
    return found, unknown


def delete(conn: sqlite3.Connection, row_ids: list[int]) -> tuple[int, int]:
    """Delete rows in one transaction; returns (generation before, after)."""
    with transaction(conn):
        generations = _bump(conn)
        conn.executemany("DELETE FROM slides WHERE id = ?", [(i,) for i in row_ids])
    return generations


def record(conn: sqlite3.Connection, key, dim: int) -> SlideRecord | None:
    """The full record for a row id (int) or fingerprint (str), or None."""
    column = "fingerprint" if isinstance(key, str) else "id"
    value = key if isinstance(key, str) else int(key)
    row = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM slides WHERE {column} = ?", (value,)).fetchone()
    if row is None:
        return None
    (row_id, path, fp, fmt, mpp, width, height, thumb, vec, report, rvec, label, site, fpath, extra, added) = row
    return SlideRecord(
        path=path, fingerprint=fp, format=fmt, mpp=mpp, width=width, height=height, thumbnail_png=bytes(thumb),
        vector=blob_to_vector(vec, dim), report=report,
        report_vector=None if rvec is None else blob_to_vector(rvec, dim),
        label=label, site=site, features_path=fpath, extra=json.loads(extra), added=added, id=row_id,
    )  # fmt: skip


def hit_rows(conn: sqlite3.Connection, row_ids) -> dict[int, tuple]:
    """Row id -> the columns a Hit needs (HIT_COLUMNS order); ids not in the database are left out."""
    out = {}
    row_ids = [int(i) for i in row_ids]
    for start in range(0, len(row_ids), _CHUNK):
        chunk = row_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT {HIT_COLUMNS} FROM slides WHERE id IN ({marks})", chunk):
            out[int(row[0])] = row
    return out


def escape_like(text: str) -> str:
    """Escape LIKE's wildcards so the user's % and _ match themselves (paired with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clause(filters: dict | None) -> tuple[str, list]:
    """SQL conditions (joined by AND, or "") and their parameters for a search's ``filters`` dict."""
    if filters is None:
        return "", []
    if not isinstance(filters, dict):
        raise ValueError(f"filters must be a dict or None, got {type(filters).__name__}")
    unknown = sorted(set(filters) - set(FILTER_KEYS), key=str)
    if unknown:
        raise ValueError(f"unknown filter key(s) {unknown}; allowed keys: {', '.join(FILTER_KEYS)}")
    parts, params = [], []
    for key in ("label", "site"):
        if key not in filters:
            continue
        value = filters[key]
        if value is None:
            parts.append(f"{key} IS NULL")
        elif isinstance(value, str):
            parts.append(f"{key} = ?")
            params.append(value)
        else:
            raise ValueError(f"filter {key!r} must be a string or None, got {value!r}")
    for key, column in (("report_contains", "report"), ("path_contains", "path")):
        if key not in filters:
            continue
        value = filters[key]
        if not isinstance(value, str) or not value:
            raise ValueError(f"filter {key!r} must be a non-empty string, got {value!r}")
        parts.append(f"{column} LIKE ? ESCAPE '\\'")
        params.append(f"%{escape_like(value)}%")
    return " AND ".join(parts), params


def filtered_ids(conn: sqlite3.Connection, target: str, filters: dict) -> np.ndarray:
    """(M,) int64 ids of rows with a ``target`` vector that match ``filters``."""
    where, params = filter_clause(filters)
    sql = f"SELECT id FROM slides WHERE {VECTOR_COLUMN[target]} IS NOT NULL"
    if where:
        sql += f" AND {where}"
    return np.array([r[0] for r in conn.execute(sql, params)], dtype=np.int64)
