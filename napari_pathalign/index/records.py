"""What goes into the slide library and what comes out of it: plain dataclasses and their checks.

Numpy only: embeddings arrive as arrays made elsewhere, so this package never needs torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class LibraryError(ValueError):
    """A library folder cannot be created, opened or used as asked: the message says why and what to do."""


@dataclass
class SlideRecord:
    """One slide in the library: its identity, a thumbnail, its vector and what is known about it."""

    path: str  # where the slide file was when it was added (informative; the fingerprint identifies it)
    fingerprint: str  # content hash of the slide file, made by the caller; one row per fingerprint
    format: str  # reader backend / file format, as io.Slide.format says ("svs", "ome-tiff", ...)
    mpp: float | None  # level-0 µm per pixel; None when the slide has none
    width: int  # level-0 width in pixels
    height: int  # level-0 height in pixels
    thumbnail_png: bytes  # small tissue thumbnail, PNG bytes made by the caller
    vector: np.ndarray  # (E,) float32 slide embedding, L2-normalised (re-normalised on add)
    report: str | None = None  # pathology report text, if any
    report_vector: np.ndarray | None = None  # (E,) float32 text embedding of the report, same space
    label: str | None = None  # diagnosis / class label used by majority vote
    site: str | None = None  # organ or site
    features_path: str | None = None  # cached patch-feature .h5 of the slide, for region re-ranking
    extra: dict = field(default_factory=dict)  # anything else, stored as JSON
    added: str | None = None  # ISO-8601 UTC time of first insertion, set by the library
    id: int | None = None  # row id in the database == id in the FAISS indexes, set by the library


@dataclass
class Hit:
    """One search result, best first; ``score`` is the inner product of normalised vectors (cosine)."""

    id: int  # row id of the slide
    score: float  # inner product with the query, in [-1, 1]
    rank: int  # 1 = best
    path: str  # slide path as recorded
    fingerprint: str  # slide content hash
    label: str | None  # the slide's label
    site: str | None  # organ or site
    report: str | None  # full report text (None when the slide has none)
    thumbnail_png: bytes  # the stored thumbnail
    features_path: str | None  # cached feature .h5, for region re-ranking
    target: str  # "slides" (matched the slide vector) or "reports" (matched the report vector)
    region_xywh: tuple | None = None  # best-matching region (x, y, w, h) in level-0 px, set by re-ranking
    region_score: float | None = None  # similarity of that region to the query (re-ranking stage)


@dataclass
class LibraryInfo:
    """A summary of one library folder, for the UI and the CLI."""

    path: str  # the library folder
    count: int  # slides in the library
    reports_count: int  # slides that have a report vector (searchable with target="reports")
    index_type: str  # FAISS index in use for slides: "flat", "ivf" or "hnsw"
    index_reason: str  # why that index type was chosen, in words
    requested_index_type: str  # what the library was created with: "auto", "flat", "ivf" or "hnsw"
    dim: int  # embedding dimension E
    model: str  # slide model name the vectors come from
    model_hash: str  # hash of that model's weights
    encoder: str  # patch encoder name
    encoder_hash: str  # hash of the patch encoder's weights
    created: str  # ISO-8601 UTC creation time
    schema_version: int  # database schema version
    size_bytes: int  # size of the folder's files on disk
    repaired: str | None  # what open() had to rebuild, or None


def normalised(vector, dim: int, what: str) -> np.ndarray:
    """A float32 (dim,) unit vector; refuses wrong shapes, NaN/inf and zero vectors instead of guessing."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim == 2 and v.shape[0] == 1:
        v = v[0]
    if v.shape != (dim,):
        raise ValueError(f"{what} has shape {v.shape}; expected ({dim},) to match the library's dim")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} contains NaN or inf; the embedding step failed upstream")
    norm = float(np.linalg.norm(v.astype(np.float64)))
    if norm < 1e-12:
        raise ValueError(f"{what} is all zeros; it cannot be compared to anything (was the slide empty?)")
    return (v / norm).astype(np.float32)


def check_record(rec: SlideRecord, dim: int) -> SlideRecord:
    """A validated copy of ``rec`` with unit vectors; raises ValueError naming the field and the slide."""
    if not isinstance(rec, SlideRecord):
        raise ValueError(f"expected SlideRecord, got {type(rec).__name__}")
    who = f"slide {rec.path!r}"
    if not isinstance(rec.path, str) or not rec.path:
        raise ValueError(f"SlideRecord.path must be a non-empty string, got {rec.path!r}")
    if not isinstance(rec.fingerprint, str) or not rec.fingerprint:
        raise ValueError(f"{who}: fingerprint must be a non-empty string (the content hash), got {rec.fingerprint!r}")
    if not isinstance(rec.format, str):
        raise ValueError(f"{who}: format must be a string, got {rec.format!r}")
    if rec.mpp is not None and not (isinstance(rec.mpp, (int, float)) and math.isfinite(rec.mpp) and rec.mpp > 0):
        raise ValueError(f"{who}: mpp must be a positive number or None, got {rec.mpp!r}")
    for name in ("width", "height"):
        value = getattr(rec, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{who}: {name} must be a positive integer (level-0 pixels), got {value!r}")
    if not isinstance(rec.thumbnail_png, (bytes, bytearray)) or not bytes(rec.thumbnail_png).startswith(PNG_SIGNATURE):
        raise ValueError(f"{who}: thumbnail_png must be PNG bytes (starting with the PNG signature)")
    for name in ("report", "label", "site", "features_path"):
        value = getattr(rec, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{who}: {name} must be a string or None, got {type(value).__name__}")
    if rec.report_vector is not None and rec.report is None:
        raise ValueError(f"{who}: report_vector given without report text; pass the report it encodes")
    if not isinstance(rec.extra, dict):
        raise ValueError(f"{who}: extra must be a dict, got {type(rec.extra).__name__}")
    try:
        json.dumps(rec.extra)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{who}: extra must be JSON-serialisable ({err})") from None
    return SlideRecord(
        path=rec.path,
        fingerprint=rec.fingerprint,
        format=rec.format,
        mpp=None if rec.mpp is None else float(rec.mpp),
        width=int(rec.width),
        height=int(rec.height),
        thumbnail_png=bytes(rec.thumbnail_png),
        vector=normalised(rec.vector, dim, f"{who}: vector"),
        report=rec.report,
        report_vector=(
            None if rec.report_vector is None else normalised(rec.report_vector, dim, f"{who}: report_vector")
        ),
        label=rec.label,
        site=rec.site,
        features_path=rec.features_path,
        extra=dict(rec.extra),
    )
