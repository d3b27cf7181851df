"""Slide -> tissue -> grid -> patches -> features, cached per slide in TRIDENT-layout HDF5.

The cache key covers what changes the result: the slide's content (not its path), the grid
parameters, the tissue detector version and the encoder with its weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from napari_pathalign.core.generators import run_to_end
from napari_pathalign.core.grid_config import GridConfig
from napari_pathalign.io.features import SlideFeatures, read_features, write_features

TISSUE_VERSION = "hsv-ink-1"  # bump when the tissue detector changes: old caches are recomputed
DICOM_IDENTITY = "dicom-sop-1"  # the kind of key of a slide identified by its DICOM UIDs, not its bytes
CODEC_SCALED = (
    "codec-scaled-1"  # in the key of slides whose JPEG tiles are decoded at 1/2..1/8 (other pixels unchanged)
)


def slide_fingerprint(slide) -> str:
    """What identifies a slide's pixels, for the feature cache, the library and report provenance.

    ``slide`` is an open ``Slide``, or the path of a file or DICOM folder. A file: a hash of its bytes (size
    plus its first, middle and last MiB; all files of a DICOM folder). A slide on a DICOMweb server has no
    bytes to hash: its pyramid's SOP Instance UIDs, matrix sizes and transfer syntaxes
    (``io.dicomweb_slide.pyramid_identity``), so the same series on two servers, or under other
    credentials, shares one key. (A DICOM folder keeps its byte hash: changing it would orphan the
    reports and library rows already keyed on it.)
    """
    pyramid = getattr(slide, "properties", {}).get("dicom.pyramid") or getattr(
        getattr(slide, "path", slide), "dicom_pyramid", None
    )  # a Slide from a server, or its path (``SeriesPath``), which is all some callers keep
    if pyramid:
        return hashlib.sha256("\n".join([DICOM_IDENTITY, *sorted(pyramid)]).encode()).hexdigest()[:16]
    path = Path(getattr(slide, "path", slide))
    if not path.exists():
        raise ValueError(
            f"{path} is neither a file nor a folder, so there are no bytes to fingerprint; pass the open Slide "
            "(a slide from a DICOMweb server is identified by its DICOM UIDs)"
        )
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            for offset in sorted({0, max(0, size // 2 - 2**19), max(0, size - 2**20)}):
                fh.seek(offset)
                h.update(fh.read(2**20))
    return h.hexdigest()[:16]


def cache_key(slide, grid: GridConfig, encoder) -> str:
    from napari_pathalign.tiling.extract import codec_scale
    from napari_pathalign.tiling.grid import read_plan

    parts = [
        slide_fingerprint(slide),
        repr(sorted(asdict(grid).items())),
        TISSUE_VERSION,
        encoder.name,
        encoder.weights_hash,
    ]
    _, _, level, read_size, _ = read_plan(slide, grid.patch_size, grid.target_mpp)
    scale = codec_scale(slide, level, read_size, grid.patch_size)
    if scale > 1:  # those patches' pixels come from the codec's scaled IDCT, not a resize
        parts.append(f"{CODEC_SCALED}/{scale}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """The user's cache folder for feature files (platformdirs: ~/.cache/napari-pathalign/features on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-pathalign")) / "features"


def iter_embed_slide(
    slide, encoder, grid: GridConfig = GridConfig(), cache_dir: Path | None = None, batch_size: int = 64
) -> Iterator[tuple[int, int]]:
    """Generator of (patches done, total); its return value (StopIteration.value) is ``SlideFeatures``.

    A generator so that a napari ``thread_worker`` can report progress and cancel between batches.
    """
    from napari_pathalign.tiling.extract import extract_patches
    from napari_pathalign.tiling.grid import patch_grid
    from napari_pathalign.tiling.tissue import tissue_mask

    key = cache_key(slide, grid, encoder)
    cached = Path(cache_dir) / f"{slide.path.stem}.{key}.h5" if cache_dir else None
    if cached is not None and cached.exists():
        feats = read_features(cached)
        if feats.cache_key == key:
            yield len(feats.features), len(feats.features)
            return feats
    patches = patch_grid(
        slide, tissue_mask(slide), grid.patch_size, grid.target_mpp, grid.max_patches, grid.min_tissue, grid.seed
    )
    total = len(patches)
    out = np.zeros((total, encoder.dim), np.float32)
    done = 0
    yield 0, total
    for batch, index in extract_patches(slide, patches, batch_size=batch_size):
        out[index] = encoder.encode(batch)  # (B, D)
        done += len(index)
        yield done, total
    feats = SlideFeatures(
        out,
        patches.xy_level0,
        patches.patch_size,
        patches.size_level0,
        patches.target_mpp,
        slide.mpp,
        slide.shape_level0,
        encoder.name,
        encoder.weights_hash,
        key,
        {"note": patches.note},
    )
    if cached is not None:
        write_features(cached, feats)
    return feats


def embed_slide(
    slide,
    encoder,
    grid: GridConfig = GridConfig(),
    cache_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 64,
) -> SlideFeatures:
    """Features of every tissue patch of ``slide``; ``progress(done, total)`` after each batch."""
    return run_to_end(
        iter_embed_slide(slide, encoder, grid, cache_dir, batch_size),
        (lambda p: progress(*p)) if progress is not None else None,
    )
