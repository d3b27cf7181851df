"""Similar-case search: queries as vectors for the library, and the second stage that finds *where*
in each hit slide a region query matches.

Stage 1 (``index.Library.search``): the query vector against the slide vectors (FAISS).
Stage 2 (``locate_region``, region queries only): for each top slide, windows of the query region's
size slide over its cached patch features; the retrieval model's Q-Former embeds every window as a
small slide and the best-matching window becomes ``Hit.region_xywh`` (level-0 x, y, w, h).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

MAX_WINDOWS_PER_BATCH = 256


def text_vector(model, text: str) -> np.ndarray:
    """(E,) normalised text embedding for text -> slides."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the search text is empty; type a phrase such as 'metastatic carcinoma'")
    return model.encode_text([text.strip()])[0]


def slide_query(slide, model, encoder, features_dir, polygon_xy_level0=None) -> tuple[np.ndarray, int | None]:
    """(E,) retrieval vector of a slide, or of the patches inside a level-0 polygon, and for a region
    the side (lattice cells) of the windows that re-rank its hits; features come from the cache."""
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.engine.regions import patches_in_polygon

    if slide.mpp is None:
        raise ValueError(
            f"{slide.path.name} has no microns-per-pixel metadata; the retrieval model places patches in µm"
        )
    feats = embed_slide(slide, encoder, GridConfig(), cache_dir=features_dir)
    if len(feats.features) == 0:
        raise ValueError(f"no tissue found on {slide.path.name}; nothing to search with")
    if polygon_xy_level0 is None:
        return model.encode_slide(feats).vector, None
    inside = patches_in_polygon(feats.xy_level0, feats.size_level0, polygon_xy_level0)
    if len(inside) == 0:
        raise ValueError("no tissue patch lies inside the region; draw it (or zoom the view) over tissue")
    vec = model.encode_slide(feats.features[inside], feats.xy_level0[inside], feats.mpp).vector
    return vec, max(1, int(round(np.sqrt(len(inside)))))


def slide_in_scope(slide, encoder, features_dir):
    """The query slide's ``InScope`` (is it tissue the model knows?), or None when no in-scope model ships
    for ``encoder``: a search for an out-of-scope query says so next to its hits."""
    from napari_pathalign.core.grid_config import GridConfig
    from napari_pathalign.engine.features import embed_slide
    from napari_pathalign.models.in_scope import load_embedded_in_scope

    if encoder is None or encoder.name != "embedded" or slide.mpp is None:
        return None
    try:
        model = load_embedded_in_scope(encoder)
    except ValueError:
        return None
    feats = embed_slide(slide, encoder, GridConfig(), cache_dir=features_dir)
    return model.score(feats) if len(feats.features) else None


def windows(xy_level0: np.ndarray, size_level0: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square windows of ``side`` lattice cells at stride side/2 over a slide's patches.

    Returns patch indices (W, side²) padded with -1 -> valid (W, side²) and each window's level-0
    (x, y) corner (W, 2). Windows with fewer than a quarter of their cells on tissue are dropped.
    """
    from napari_pathalign.engine.regions import lattice_index

    rc, dense, origin = lattice_index(xy_level0, size_level0)
    rows, cols = dense.shape
    stride = max(1, side // 2)
    out, corners = [], []
    for r0 in range(0, max(1, rows - side + stride), stride):
        for c0 in range(0, max(1, cols - side + stride), stride):
            cell = dense[r0 : r0 + side, c0 : c0 + side].ravel()
            if (cell >= 0).sum() >= max(1, side * side // 4):
                out.append(np.pad(cell, (0, side * side - len(cell)), constant_values=-1))
                corners.append(((origin[1] + c0) * size_level0, (origin[0] + r0) * size_level0))
    if not out:
        return np.zeros((0, side * side), np.int64), np.zeros((0, side * side), bool), np.zeros((0, 2), np.int64)
    index = np.stack(out)
    return index, index >= 0, np.asarray(corners, np.int64)


def best_window(model, feats, query: np.ndarray, side: int) -> tuple[tuple[int, int, int, int], float] | None:
    """(x, y, w, h) level-0 box of the window of ``feats`` most similar to ``query`` (E,), and its score."""
    import torch

    from napari_pathalign.models.pathalign import slide_positions_um

    index, valid, corners = windows(feats.xy_level0, feats.size_level0, side)
    if len(index) == 0:
        return None
    f = torch.from_numpy(np.asarray(feats.features, np.float32))
    xy = torch.from_numpy(slide_positions_um(feats.xy_level0, feats.mpp))
    q = torch.from_numpy(np.asarray(query, np.float32)).to(model.device)
    scores = []
    with torch.no_grad():
        for s in range(0, len(index), MAX_WINDOWS_PER_BATCH):
            idx = torch.from_numpy(
                np.where(valid[s : s + MAX_WINDOWS_PER_BATCH], index[s : s + MAX_WINDOWS_PER_BATCH], 0)
            )  # (B, K)
            ok = torch.from_numpy(valid[s : s + MAX_WINDOWS_PER_BATCH]).to(model.device)
            emb = model.slide_embed(
                model.qformer(f[idx].to(model.device), xy[idx].to(model.device), ok).queries
            )  # (B, Q, E)
            scores.append((emb @ q).max(dim=1).values.float().cpu().numpy())  # (B,) max over queries
    scores = np.concatenate(scores)
    best = int(np.argmax(scores))
    x, y = corners[best]
    s = side * feats.size_level0
    return (int(x), int(y), s, s), float(scores[best])


def locate_region(model, hits, query: np.ndarray, side: int, top: int = 10) -> list:
    """Hits with ``region_xywh`` (and ``region_score``) filled for the first ``top`` that have cached features."""
    from pathlib import Path

    from napari_pathalign.io.features import read_features

    out = []
    for i, hit in enumerate(hits):
        if i < top and hit.features_path and Path(hit.features_path).is_file():
            found = best_window(model, read_features(Path(hit.features_path)), query, side)
            if found is not None:
                hit = replace(hit, region_xywh=found[0], region_score=found[1])
        out.append(hit)
    return out
