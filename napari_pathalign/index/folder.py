"""The library folder on disk: make a new one privately, or open an existing one's database with clear refusals.

Reports can identify patients, so the folder is 0o700 and every file in it 0o600.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write
from napari_pathalign.index import schema
from napari_pathalign.index.records import LibraryError
from napari_pathalign.index.schema import DB_NAME, META_KEYS, SCHEMA_VERSION, TARGETS
from napari_pathalign.index.vectors import KINDS, VectorIndex, plan_index

FOLDER_MODE = 0o700
FILE_MODE = 0o600
INDEX_FILES = {"slides": "slides.faiss", "reports": "reports.faiss"}
_HOW = "create one with Library.create(folder, model=..., ...) or `pathalign index`"


def check_settings(meta: dict) -> None:
    """ValueError naming the setting unless model, hashes, dim and index_type are usable."""
    for name in ("model", "model_hash", "encoder", "encoder_hash"):
        if not isinstance(meta[name], str) or not meta[name]:
            raise ValueError(f"{name} must be a non-empty string, got {meta[name]!r}")
    dim = meta["dim"]
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    if meta["index_type"] != "auto" and meta["index_type"] not in KINDS:
        expected = ", ".join(map(repr, KINDS))
        raise ValueError(f"index_type {meta['index_type']!r} is not known; expected 'auto', {expected}")


def make_folder(folder: Path, meta: dict) -> None:
    """Write a new, empty library into ``folder`` (which must be new or empty)."""
    check_settings(meta)
    meta = dict(meta, dim=int(meta["dim"]))
    if folder.exists():
        if not folder.is_dir():
            raise LibraryError(f"{folder} is a file; a slide library is a folder: choose a new or empty folder")
        if (folder / DB_NAME).exists():
            raise LibraryError(f"{folder} already holds a slide library; open it with Library.open({str(folder)!r})")
        entries = sorted(p.name for p in folder.iterdir())
        if entries:
            raise LibraryError(
                f"{folder} is not empty ({len(entries)} entries, e.g. {entries[:3]}) and is not a slide library; "
                "choose a new or empty folder"
            )
    folder.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    os.chmod(folder, FOLDER_MODE)  # mkdir's mode is reduced by the umask, and ignored for an existing folder
    # built under a temporary name and renamed last: a folder with library.sqlite is a complete library
    with atomic_write(folder / DB_NAME, mode=FILE_MODE) as tmp:  # SQLite's journals copy this file's mode (0o600)
        conn = schema.connect(tmp, create=True)
        try:
            schema.create_tables(conn, meta)
        finally:
            conn.close()
        dim = int(meta["dim"])
        plan = plan_index(meta["index_type"], 0)
        for target in TARGETS:
            empty = VectorIndex.build(plan, dim, np.empty(0, np.int64), np.empty((0, dim), np.float32))
            empty.write(folder / INDEX_FILES[target])


def open_database(folder: Path) -> tuple[sqlite3.Connection, dict]:
    """(connection, meta) of the library in ``folder``; LibraryError, writing nothing, if it is not one we can read."""
    if not folder.is_dir():
        raise LibraryError(f"no slide library at {folder}: the folder does not exist; {_HOW}")
    db = folder / DB_NAME
    if not db.is_file():
        raise LibraryError(f"{folder} is not a slide library: {DB_NAME} is missing; {_HOW} in a new or empty folder")
    conn = None
    try:
        conn = schema.connect(db)  # mode=rw: never creates, and only reads from here on
        meta = schema.read_meta(conn)
        version = str(meta.get("schema_version", ""))
        if version.isdigit() and int(version) > SCHEMA_VERSION:
            raise LibraryError(
                f"{db} was written by a newer napari-pathalign (schema version {version}; this one reads up to "
                f"{SCHEMA_VERSION}); upgrade napari-pathalign to open it"
            )
        missing = [key for key in META_KEYS if key not in meta] or ([] if version.isdigit() else ["schema_version"])
        if missing:
            raise LibraryError(f"{db} lacks library metadata {missing}; it is not a complete slide library; {_HOW}")
        schema.check_tables(conn)
    except (sqlite3.DatabaseError, LibraryError) as err:
        if conn is not None:
            conn.close()
        if isinstance(err, LibraryError):
            raise
        raise LibraryError(
            f"{db} is not a readable slide-library database ({err}); it was left untouched: "
            "restore it from a backup, or create a new library in another folder"
        ) from err
    return conn, meta
