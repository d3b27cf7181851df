"""Heatmaps as data: one value per patch with the grid's level-0 geometry.

Layers, exported files and metrics all start from the same ``Heatmap``, so what is exported is what
was shown. ``raster()`` lays the values on the patch lattice (one pixel per patch) with ``scale`` and
``translate`` in µm in napari's (row, col) order, so the image lies exactly on the slide layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

NORMALISATIONS = ("raw", "percentile", "rank")


@dataclass
class Raster:
    """A heatmap on the patch lattice, ready for a napari Image layer over the slide."""

    image: np.ndarray  # (rows, cols) float32, NaN where there is no patch
    scale: tuple[float, float]  # (row, col) µm per raster pixel (pixels when the slide has no mpp)
    translate: tuple[float, float]  # (row, col) world position of raster pixel (0, 0)'s centre
    units: str  # 'µm' or 'pixel'
    origin_rc: tuple[int, int]  # lattice (row, col) of raster pixel (0, 0)


@dataclass(eq=False)  # array fields: == would be ambiguous
class Heatmap:
    """Per-patch values of one map (attention, text similarity, class probability, ...)."""

    values: np.ndarray  # (N,) float32 per patch
    xy_level0: np.ndarray  # (N, 2) int64 top-left (x, y) of each patch in level-0 pixels
    size_level0: int  # patch side in level-0 pixels (patches sit on a lattice of this pitch)
    mpp: float | None  # the slide's level-0 µm per pixel; None: pixel units
    kind: str  # 'attention', 'attention-text-weighted', 'text', 'zero-shot', ...
    label: str  # human-readable: what the values mean ("similarity to 'lymphocytes'")
    normalisation: str = "raw"  # one of NORMALISATIONS
    params: dict = field(default_factory=dict)  # what selected it: layer/head/query/reduce, text, model
    raw: np.ndarray | None = None  # (N,) the values before normalisation; None when values are raw

    def __post_init__(self):
        self.values = np.asarray(self.values, np.float32).reshape(-1)
        self.xy_level0 = np.asarray(self.xy_level0, np.int64).reshape(-1, 2)
        if len(self.values) != len(self.xy_level0):
            raise ValueError(
                (
                    f"heatmap has {len(self.values)} values but {len(self.xy_level0)} patch positions; expected "
                    "one value per patch"
                )
            )
        if int(self.size_level0) < 1:
            raise ValueError(f"size_level0 is the patch side in level-0 pixels, >= 1; got {self.size_level0!r}")
        if self.raw is not None and len(self.raw) != len(self.values):
            raise ValueError(f"raw has {len(self.raw)} values for {len(self.values)} patches")
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation {self.normalisation!r}; expected one of {NORMALISATIONS}")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def title(self) -> str:
        """The label with the normalisation named, for layer names and file metadata."""
        return f"{self.label} [{self.normalisation}]"

    def normalised(self, how: str) -> Heatmap:
        """The same map in another normalisation, always computed from the raw values' order.

        raw: as computed. percentile: clipped to the 1st-99th percentile and scaled to [0, 1], so
        one outlier patch cannot wash the map out. rank: each patch's rank among the slide's
        patches in [0, 1] (uniform histogram; compares maps of different scales).
        """
        if how not in NORMALISATIONS:
            raise ValueError(f"normalisation {how!r}; expected one of {NORMALISATIONS}")
        v = self.raw_values
        finite = np.isfinite(v)
        if how == "raw" or not finite.any():
            out = v.copy()
        elif how == "percentile":
            lo, hi = np.percentile(v[finite], [1, 99])
            out = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.where(finite, 0.5, np.nan)
        else:
            from scipy.stats import rankdata

            out = np.full_like(v, np.nan)
            r = rankdata(v[finite], method="average")
            out[finite] = (r - 1) / max(len(r) - 1, 1)
        return replace(self, values=np.asarray(out, np.float32), normalisation=how, raw=v)

    @property
    def raw_values(self) -> np.ndarray:
        """The values before normalisation."""
        return np.asarray(self.values if self.raw is None else self.raw, np.float32)

    def lattice_rc(self) -> np.ndarray:
        """(N, 2) lattice (row, col) of each patch."""
        return np.stack([self.xy_level0[:, 1], self.xy_level0[:, 0]], axis=1) // self.size_level0

    def raster(self) -> Raster:
        """One pixel per lattice cell over the patches' bounding box; NaN where there is no patch.

        Patches must sit on the lattice of pitch ``size_level0`` (as ``patch_grid`` lays them out);
        foreign coordinates off the lattice are floored onto it.

        A patch covers level-0 pixels [x, x + S); napari puts level-0 pixel i's centre at i * mpp, so
        the patch's centre is at (x + S/2 - 1/2) * mpp. That is where its raster pixel goes.
        """
        if len(self) == 0:
            raise ValueError("the heatmap has no patches (no tissue?); nothing to draw")
        rc = self.lattice_rc()  # (N, 2)
        r0, c0 = rc.min(0)
        rows, cols = rc.max(0) - (r0, c0) + 1
        image = np.full((rows, cols), np.nan, np.float32)
        image[rc[:, 0] - r0, rc[:, 1] - c0] = self.values
        step = 1.0 if self.mpp is None else float(self.mpp)
        s = self.size_level0
        scale = (s * step, s * step)
        translate = ((r0 * s + s / 2 - 0.5) * step, (c0 * s + s / 2 - 0.5) * step)
        return Raster(image, scale, translate, "pixel" if self.mpp is None else "µm", (int(r0), int(c0)))

    def value_at(self, xy_level0) -> tuple[int, float] | None:
        """(patch index, value) of the patch under a level-0 point, or None off the patches."""
        i = patch_at(self.xy_level0, self.size_level0, xy_level0)
        return None if i is None else (i, float(self.values[i]))

    def top_patches(self, k: int = 8) -> np.ndarray:
        """Indices of the k patches with the highest values."""
        v = np.where(np.isfinite(self.values), self.values, -np.inf)
        return np.argsort(-v, kind="stable")[: max(0, k)]


def patch_at(xy_level0: np.ndarray, size_level0: int, point_xy_level0) -> int | None:
    """Index of the patch (corners ``xy_level0``, side ``size_level0``) under a level-0 point, or None."""
    x, y = float(point_xy_level0[0]), float(point_xy_level0[1])
    inside = (
        (xy_level0[:, 0] <= x)
        & (x < xy_level0[:, 0] + size_level0)
        & (xy_level0[:, 1] <= y)
        & (y < xy_level0[:, 1] + size_level0)
    )
    hits = np.flatnonzero(inside)
    return None if len(hits) == 0 else int(hits[0])
