"""Does a FAISS index file agree with the database? The check ``Library.open`` runs before trusting one.

The database is the truth; an index file may be missing, truncated, corrupt, of another dim, or
stale (the process was killed between a database commit and the index write). Any of these means
rebuilding the index from the stored vectors, which the caller does and reports.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np

from napari_pathalign.index import schema
from napari_pathalign.index.vectors import VectorIndex

CHECK_SAMPLE = 64  # vectors compared between index and database on open (evenly spread over the ids)
STALE_TEMP_S = 3600  # temporary index files older than this are leftovers of a killed writer


def check_index_file(
    path: Path, conn: sqlite3.Connection, target: str, dim: int
) -> tuple[VectorIndex | None, str | None]:
    """(index, None) if ``path`` agrees with the database's ``target`` vectors, else (None, what is wrong)."""
    if not path.exists():
        return None, "was missing"
    try:
        index = VectorIndex.read(path)
    except (RuntimeError, ValueError, OSError, MemoryError) as err:
        return None, f"could not be read (truncated or corrupt: {str(err).strip().splitlines()[-1][:160]})"
    if index.dim != dim:
        return None, f"has dim {index.dim}, not the library's {dim}"
    db_ids, held = schema.ids(conn, target), index.ids()
    if not np.array_equal(db_ids, held):
        missing, extra = np.setdiff1d(db_ids, held).size, np.setdiff1d(held, db_ids).size
        return None, (
            f"disagreed with the database ({missing} slides missing from it, {extra} ids not in the database, "
            "e.g. after a crash during add/remove)"
        )
    # ids agree; a sample of vectors catches a file whose body is damaged but still parses
    spread = np.unique(np.linspace(0, len(db_ids) - 1, min(len(db_ids), CHECK_SAMPLE)).astype(int))
    ids, stored = schema.vectors(conn, target, dim, subset=db_ids[spread])
    for row_id, vector in zip(ids, stored):
        if not np.allclose(index.reconstruct(row_id), vector, atol=1e-5):
            return None, f"holds a vector for slide {row_id} that differs from the database (corrupt)"
    return index, None


def remove_stale_temp_files(folder: Path, index_names) -> None:
    """Delete temporary index files a killed writer left behind (only old ones: a live writer may own new ones)."""
    cutoff = time.time() - STALE_TEMP_S
    for name in index_names:
        for tmp in folder.glob(f".{name}.*.partial"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except OSError:
                pass  # gone already, or not ours to delete
