"""Regions of a slide as the Q-Former sees them: patch neighbourhoods and drawn polygons.

A text heatmap needs an embedding per place on the slide in the same space as the text. A single
patch is a poor input for a model trained on whole slides (too little context); the whole slide has
no "where". So each patch gets the embedding of its local neighbourhood: the Q-Former runs over the
patches within ``radius`` lattice cells (a (2r+1)² window, fewer at the tissue edge), with the
positional encoding centred on that window, exactly as it runs on a slide. PathAlign's models are
trained with patch dropout (a few dozen random patches per slide per step), so a window of 25-49
patches is an input they know.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


def lattice_index(xy_level0: np.ndarray, size_level0: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(N, 2) lattice (row, col) per patch, a dense (rows, cols) map lattice cell -> patch index (-1: none), origin."""
    rc = np.stack([xy_level0[:, 1], xy_level0[:, 0]], axis=1) // size_level0  # (N, 2)
    origin = rc.min(0)
    rc = rc - origin
    dense = np.full(tuple(rc.max(0) + 1), -1, np.int64)  # (rows, cols)
    dense[rc[:, 0], rc[:, 1]] = np.arange(len(rc))
    return rc, dense, (int(origin[0]), int(origin[1]))


def neighbourhoods(xy_level0: np.ndarray, size_level0: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch indices (N, K) of each patch's (2r+1)² window, K = (2r+1)², and valid (N, K) bool.

    Column 0 is the patch itself; missing cells (glass, slide edge) are invalid and point at it.
    """
    if radius < 0:
        raise ValueError(f"radius is a number of lattice cells >= 0, got {radius!r}")
    if len(xy_level0) == 0:
        return np.zeros((0, (2 * radius + 1) ** 2), np.int64), np.zeros((0, (2 * radius + 1) ** 2), bool)
    rc, dense, _ = lattice_index(np.asarray(xy_level0), size_level0)
    offsets = [(0, 0)] + [
        (dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1) if (dr, dc) != (0, 0)
    ]
    rows, cols = dense.shape
    index = np.empty((len(rc), len(offsets)), np.int64)
    for k, (dr, dc) in enumerate(offsets):
        r, c = rc[:, 0] + dr, rc[:, 1] + dc
        inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        index[:, k] = np.where(inside, dense[np.clip(r, 0, rows - 1), np.clip(c, 0, cols - 1)], -1)
    valid = index >= 0
    index = np.where(valid, index, np.arange(len(rc))[:, None])
    return index, valid


def iter_region_embeddings(
    model,
    features: np.ndarray,
    xy_level0: np.ndarray,
    mpp: float,
    size_level0: int,
    radius: int = 2,
    batch_size: int = 256,
) -> Iterator[tuple[int, int]]:
    """Generator of (done, total); returns (N, Q, E) normalised embeddings of each patch's window."""
    import torch

    from napari_pathalign.models.pathalign import slide_positions_um

    index, valid = neighbourhoods(xy_level0, size_level0, radius)
    feats = torch.from_numpy(np.asarray(features, np.float32))  # (N, D)
    xy_um = torch.from_numpy(slide_positions_um(xy_level0, mpp))  # (N, 2)
    n = len(index)
    out = np.zeros((n, model.cfg.qformer.num_queries, model.cfg.embed_dim), np.float32)
    yield 0, n
    with torch.no_grad():
        for start in range(0, n, batch_size):
            idx = torch.from_numpy(index[start : start + batch_size])  # (B, K)
            ok = torch.from_numpy(valid[start : start + batch_size]).to(model.device)  # (B, K)
            queries = model.qformer(feats[idx].to(model.device), xy_um[idx].to(model.device), ok).queries  # (B, Q, H)
            out[start : start + len(idx)] = model.slide_embed(queries).float().cpu().numpy()  # (B, Q, E)
            yield min(start + batch_size, n), n
    return out


def patches_in_polygon(xy_level0: np.ndarray, size_level0: int, polygon_xy_level0) -> np.ndarray:
    """Indices of the patches whose centre lies inside a polygon (V, 2) of level-0 (x, y) vertices."""
    from napari_pathalign.tiling.region_stats import region_patches

    poly = np.asarray(polygon_xy_level0, np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        raise ValueError(
            f"a region is a polygon of at least 3 level-0 (x, y) vertices, shape (V, 2); got shape {poly.shape}"
        )
    if not np.isfinite(poly).all():
        raise ValueError("the region polygon has non-finite vertices")
    return region_patches([poly], xy_level0, size_level0)


def rectangle(x: float, y: float, w: float, h: float) -> np.ndarray:
    """A level-0 rectangle (the current view, a box) as a polygon (4, 2)."""
    if not (w > 0 and h > 0):
        raise ValueError(f"a rectangle needs a positive width and height, got {w!r} x {h!r}")
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)


def iter_cached_region_embeddings(
    model, model_hash: str, feats, radius: int, cache_dir: Path | None, stem: str
) -> Iterator[tuple[int, int]]:
    """``iter_region_embeddings`` through a float16 ``.npy`` beside the feature cache, keyed by the features'
    cache key (slide content, grid, encoder), the model's weights hash and the radius: a slide analysed
    before is ready in a moment. Returns (N, Q, E) float16."""
    from napari_pathalign.core.atomic import atomic_write

    n = len(feats.features)
    path = (
        Path(cache_dir) / f"{stem}.{feats.cache_key}.{model_hash}.r{radius}.neighbourhoods.npy"
        if cache_dir is not None and feats.cache_key
        else None
    )
    if path is not None and path.exists():
        try:
            stored = np.load(path)
        except (OSError, ValueError):  # unreadable: computed again and replaced below
            stored = None
        if stored is not None and stored.shape[0] == n and stored.dtype == np.float16:
            yield n, n
            return stored
    out = yield from iter_region_embeddings(
        model, feats.features, feats.xy_level0, feats.mpp, feats.size_level0, radius
    )
    out = out.astype(np.float16)  # 10,240 patches x 32 queries: 168 MB, not 335
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, mode=0o600) as tmp, open(tmp, "wb") as fh:
                np.save(fh, out)
        except OSError:  # a read-only cache folder costs speed, never the analysis
            pass
    return out
