"""Slides -> library records: features (the batch embedder, locally or on dask.distributed), the
retrieval model's slide vector, the report's text vector, a tissue thumbnail; added one slide at a
time, so a crash keeps every slide added before it.

The library (``index/``) never sees torch: this module turns models into arrays for it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathalign.core.grid_config import GridConfig
from napari_pathalign.io.open import DICOMWEB_SCHEMES

THUMBNAIL_PX = 160  # longer side of the stored tissue thumbnail


@dataclass
class BuildResult:
    """What happened to one slide of a build."""

    slide: Path | str  # a file or folder, or a dicomweb+https:// address
    id: int | None = None  # library row id when added
    n_patches: int = 0
    error: str = ""  # empty on success


def read_slide_table(path: str | Path) -> dict[Path | str, dict]:
    """Rows of a CSV or JSONL table keyed by the resolved slide path (``slide`` column, relative to the table),
    or by the ``dicomweb+https://`` address of a slide on a server.

    Columns used: ``slide`` (required), ``report``, ``label``, ``site``; others go to the record's extra.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"table {path} does not exist; pass a CSV or JSONL with a 'slide' column (and report, label, site)"
        )
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        raise ValueError(f"table {path}: expected .csv or .jsonl, got {path.suffix!r}")
    out = {}
    for i, row in enumerate(rows):
        if not row.get("slide"):
            raise ValueError(f"table {path}, row {i + 1}: no 'slide' value; every row names its slide file")
        out[table_key(row["slide"], path.parent)] = row
    return out


def table_key(slide, folder: Path = Path()) -> Path | str:
    """How a slide is looked up in a table: its resolved path, or its ``dicomweb+`` address as written."""
    if isinstance(slide, str) and slide.lower().startswith(DICOMWEB_SCHEMES):
        return slide
    return (folder / slide).resolve()


def tissue_thumbnail_png(slide, xy_level0: np.ndarray, size_level0: int, max_px: int = THUMBNAIL_PX) -> bytes:
    """PNG of the slide cropped to its analysed patches (the tissue; never the label or macro image)."""
    from PIL import Image

    thumb = slide.thumbnail(1024)
    h0, w0 = slide.shape_level0
    sy, sx = thumb.shape[0] / h0, thumb.shape[1] / w0
    if len(xy_level0):
        x0, y0 = xy_level0.min(0)
        x1, y1 = xy_level0.max(0) + size_level0
        thumb = thumb[
            int(y0 * sy) : max(int(y0 * sy) + 1, int(np.ceil(y1 * sy))),
            int(x0 * sx) : max(int(x0 * sx) + 1, int(np.ceil(x1 * sx))),
        ]
    img = Image.fromarray(np.ascontiguousarray(thumb[..., :3]))
    img.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def slide_record(source, model, encoder, grid: GridConfig, features_dir: Path, row: dict | None = None):
    """One slide's ``SlideRecord`` (features from the cache, or computed and cached).

    ``source`` is a slide file or DICOM folder, a ``dicomweb+https://`` address, or an open ``Slide`` (left
    open). A slide from a server is recorded under its address (which never holds credentials) with its
    DICOM UIDs in ``extra``, so the library can open it again wherever it is served from.
    """
    from contextlib import nullcontext

    from napari_pathalign.engine.features import cache_key, embed_slide, slide_fingerprint
    from napari_pathalign.index import SlideRecord
    from napari_pathalign.io import Slide, open_slide

    row = dict(row or {})
    source = getattr(source, "dicomweb_url", None) or source  # the path of a slide from a server: its address
    opened = source if isinstance(source, Slide) else None
    with nullcontext(opened) if opened is not None else open_slide(source) as slide:
        if slide.mpp is None:
            raise ValueError(
                (
                    f"{slide.path.name} has no microns-per-pixel metadata ({slide.mpp_source}); the retrieval model "
                    "places patches in µm"
                )
            )
        feats = embed_slide(slide, encoder, grid, cache_dir=features_dir)
        if len(feats.features) == 0:
            raise ValueError("no tissue patches found (check the slide, or lower --min-tissue)")
        key = cache_key(slide, grid, encoder)
        thumb = tissue_thumbnail_png(slide, feats.xy_level0, feats.size_level0)
        h, w = slide.shape_level0
        fmt, mpp, fingerprint = slide.format, slide.mpp, slide_fingerprint(slide)
        where = slide.url or str(Path(slide.path).resolve())
        stem, archive = slide.path.stem, archive_identity(slide)
    vector = model.encode_slide(feats).vector
    report = (row.pop("report", "") or "").strip() or None
    report_vector = model.encode_text([report])[0] if report else None
    label, site = (row.pop("label", "") or None), (row.pop("site", "") or None)
    row.pop("slide", None)
    return SlideRecord(
        path=where,
        fingerprint=fingerprint,
        format=fmt,
        mpp=mpp,
        width=w,
        height=h,
        thumbnail_png=thumb,
        vector=vector,
        report=report,
        report_vector=report_vector,
        label=label,
        site=site,
        features_path=str(Path(features_dir).resolve() / f"{stem}.{key}.h5"),
        extra={**archive, **{k: v for k, v in row.items() if v not in (None, "")}},
    ), len(feats.features)


def archive_identity(slide) -> dict:
    """Where a slide from a DICOMweb server lives: the server's DICOMweb root (never credentials: an address
    cannot hold them) and its study, series and pyramid instance UIDs; {} for a file."""
    props = slide.properties
    if "dicomweb.root" not in props:
        return {}
    return {
        "dicomweb.root": props["dicomweb.root"],
        "dicom.StudyInstanceUID": props["dicom.StudyInstanceUID"],
        "dicom.SeriesInstanceUID": props["dicom.SeriesInstanceUID"],
        "dicom.SOPInstanceUIDs": [entry.split()[0] for entry in props.get("dicom.pyramid", [])],
    }


def iter_build(
    slides: list[Path],
    library,
    model,
    encoder,
    grid: GridConfig,
    features_dir: Path,
    table: dict | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Iterator[tuple[int, int, BuildResult | None]]:
    """Generator of (slides done, total, result of the last one); returns the list of ``BuildResult``.

    With ``workers``/``scheduler`` the features are computed first on dask.distributed (the batch
    embedder, one task per slide, reusing the cache); then each slide is encoded and added here.
    """
    from napari_pathalign.engine.batch import embed_many

    table = table or {}
    failed: dict[Path, str] = {}
    if workers or scheduler:
        for r in embed_many(
            slides,
            encoder.name,
            str(encoder.weights) if encoder.weights else None,
            features_dir,
            grid,
            device="cpu",
            scheduler=scheduler,
            workers=workers,
        ):
            if r.error:
                failed[r.slide] = r.error
    results: list[BuildResult] = []
    yield 0, len(slides), None
    with library.batch():  # each slide commits on its own; the index files are written once at the end
        yield from _add_each(slides, library, model, encoder, grid, features_dir, table, failed, results)
    return results


def _add_each(slides, library, model, encoder, grid, features_dir, table, failed, results):
    for i, path in enumerate(slides):
        if path in failed:
            res = BuildResult(path, error=failed[path])
        else:
            try:
                record, n = slide_record(path, model, encoder, grid, features_dir, table.get(table_key(path)))
                res = BuildResult(path, library.add([record])[0], n)  # one transaction per slide
            except Exception as exc:  # one bad slide must not stop a build of thousands
                res = BuildResult(path, error=f"{type(exc).__name__}: {exc}")
        results.append(res)
        yield i + 1, len(slides), res


def model_identity(model, encoder) -> dict:
    """What a library must be built and searched with: the model, its weights hash, the encoder, the dimension."""
    from napari_pathalign.models.weights import weights_hash

    path = getattr(model, "source_path", None)
    if path is not None:
        model_hash = weights_hash(Path(path) / "model.safetensors")
    else:  # a model built in memory (tests, notebooks): hash its weights themselves
        import hashlib

        h = hashlib.sha256()
        for name, p in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().cpu().float().numpy().tobytes())
        model_hash = h.hexdigest()[:16]
    return {
        "model": str(getattr(model, "source_name", "pathalign")),
        "model_hash": model_hash,
        "encoder": encoder.name,
        "encoder_hash": encoder.weights_hash,
        "dim": int(model.cfg.embed_dim),
    }
