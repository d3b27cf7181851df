"""Per-cell ground-truth class maps of the demo slides, and the class make-up of any square patch.

A demo slide is a grid of tile cells (``demo/data.py``); its class map sits beside it as
``<slide stem>.classes.json`` and says which class each cell shows. Scoring a heatmap's
localisation needs, for each patch the pipeline read, the share of its area on each class: a
patch rarely lines up with the cells, so the share is the exact area overlap, not the class of
the cell under its centre.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_MAP_SUFFIX = ".classes.json"
GLASS = -1  # grid value of a cell without tissue


def class_map_path(slide_path: str | Path) -> Path:
    """``slides/test-pcam-005A.tif`` -> ``slides/test-pcam-005A.classes.json``."""
    return Path(slide_path).with_suffix(CLASS_MAP_SUFFIX)


@dataclass
class ClassMap:
    """Which class each tile cell of a demo slide shows; cell (r, c) covers level-0 pixels
    ``[c * s, (c + 1) * s) x [r * s, (r + 1) * s)`` with ``s = cell_size_level0``."""

    grid: np.ndarray  # (rows, cols) int64, index into ``classes`` per cell; -1 (GLASS) is glass
    classes: list[str]  # class names; fixed per tile source, so columns compare across its slides
    cell_size_level0: int  # side of one cell in level-0 pixels
    mpp: float | None = None  # µm per level-0 pixel of the slide

    @property
    def shape_level0(self) -> tuple[int, int]:
        """(height, width) of the gridded area in level-0 pixels."""
        rows, cols = self.grid.shape
        return rows * self.cell_size_level0, cols * self.cell_size_level0


def read_class_map(slide_path: str | Path) -> ClassMap:
    """The class map written beside ``slide_path`` (or the ``.classes.json`` file itself)."""
    path = Path(slide_path)
    if not path.name.endswith(CLASS_MAP_SUFFIX):
        path = class_map_path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no class map at {path}; class maps come with demo slides made by `napari-pathalign demo-data`"
        )
    doc = json.loads(path.read_text())
    grid = np.asarray(doc["grid"], dtype=np.int64)
    classes = list(doc["classes"])
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"{path}: grid must be a non-empty list of rows, got shape {grid.shape}")
    if grid.min() < GLASS or grid.max() >= len(classes):
        raise ValueError(
            (
                f"{path}: grid values must lie in -1..{len(classes) - 1} (glass or an index into classes), "
                f"got {grid.min()}..{grid.max()}"
            )
        )
    return ClassMap(grid, classes, int(doc["cell_size_level0"]), doc.get("mpp"))


def _overlap_1d(start: np.ndarray, size: np.ndarray, n_cells: int, cell: int) -> np.ndarray:
    """(N,) intervals [start, start + size) -> (N, n_cells) length of each on each cell."""
    edges = np.arange(n_cells + 1, dtype=np.float64) * cell  # (n_cells + 1,)
    lo = np.maximum(start[:, None], edges[None, :-1])  # (N, n_cells)
    hi = np.minimum((start + size)[:, None], edges[None, 1:])  # (N, n_cells)
    return np.clip(hi - lo, 0, None)


def patch_class_fractions(class_map: ClassMap, xy_level0: np.ndarray, size_level0: float | np.ndarray) -> np.ndarray:
    """(N, C) float64: the share of each square patch's area on each class of ``class_map``.

    Parameters
    ----------
    class_map : the slide's cell classes.
    xy_level0 : (N, 2) top-left (x, y) of each patch in level-0 pixels.
    size_level0 : patch side in level-0 pixels, one for all or (N,) one per patch.

    A patch covers ``[x, x + s) x [y, y + s)``; the overlap with each cell is exact, so a patch
    straddling four cells gets four area-weighted shares. The part on glass cells or beyond the
    grid is in no class: a row sums to the patch's tissue share, at most 1.
    """
    xy = np.asarray(xy_level0, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy_level0 must be (N, 2) patch corners (x, y), got shape {xy.shape}")
    size = (
        np.broadcast_to(np.asarray(size_level0, dtype=np.float64), (len(xy),))
        if np.ndim(size_level0) == 0
        else np.asarray(size_level0, dtype=np.float64)
    )
    if size.shape != (len(xy),):
        raise ValueError(f"size_level0 must be one number or one per patch ({len(xy)}), got shape {size.shape}")
    if len(size) and not (size > 0).all():
        raise ValueError(f"size_level0 must be positive level-0 pixels, got minimum {size.min()!r}")
    rows, cols = class_map.grid.shape
    n_classes = len(class_map.classes)
    cell = class_map.cell_size_level0
    over_y = _overlap_1d(xy[:, 1], size, rows, cell)  # (N, rows)
    over_x = _overlap_1d(xy[:, 0], size, cols, cell)  # (N, cols)
    one_hot = (class_map.grid[..., None] == np.arange(n_classes)).astype(
        np.float64
    )  # (rows, cols, C); glass is all zero
    per_col = (over_y @ one_hot.reshape(rows, cols * n_classes)).reshape(len(xy), cols, n_classes)  # (N, cols, C)
    area = np.einsum("njc,nj->nc", per_col, over_x)  # (N, C) level-0 pixels²
    return area / (size**2)[:, None]
