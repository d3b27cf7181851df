"""Per-slide patch features in HDF5 with TRIDENT's layout, so files move between our tools and
TRIDENT/CLAM: a ``coords`` dataset (N, 2) of level-0 (x, y) corners with the patching attributes,
and a ``features`` dataset (N, D). Written atomically: a crash never leaves a file under the final
name that could be trusted later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write


@dataclass
class SlideFeatures:
    """Patch features of one slide and where each patch is."""

    features: np.ndarray  # (N, D) float32
    xy_level0: np.ndarray  # (N, 2) int64, top-left (x, y) of each patch in level-0 pixels
    patch_size: int  # patch side in pixels at the target resolution
    size_level0: int  # patch side in level-0 pixels
    target_mpp: float | None  # µm per patch pixel; None: the slide had no mpp
    mpp: float | None  # the slide's level-0 µm per pixel
    shape_level0: tuple[int, int]  # (height, width) of the slide
    encoder: str  # patch encoder name
    weights_hash: str  # hash of its weights
    cache_key: str = ""  # slide content + grid + encoder; empty when not cached
    extra: dict = field(default_factory=dict)


def magnification(mpp: float | None) -> float | None:
    """Objective magnification from µm per pixel by the usual convention (0.25 -> 40x, 0.5 -> 20x)."""
    return None if mpp is None else 10.0 / mpp


def write_features(path: Path, feats: SlideFeatures) -> Path:
    """Write atomically: to a temporary file in the same folder, then rename over ``path``."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        coords = f.create_dataset("coords", data=feats.xy_level0.astype(np.int64))
        h, w = feats.shape_level0
        mag0, target = magnification(feats.mpp), magnification(feats.target_mpp)
        coords.attrs.update(
            patch_size=feats.patch_size,
            patch_size_level0=feats.size_level0,
            level0_magnification=mag0 if mag0 is not None else -1,
            target_magnification=target if target is not None else -1,
            level0_width=w,
            level0_height=h,
            overlap=0,
        )
        data = f.create_dataset("features", data=feats.features.astype(np.float32))
        data.attrs.update(encoder=feats.encoder, weights_hash=feats.weights_hash)
        f.attrs.update(
            cache_key=feats.cache_key,
            mpp=feats.mpp if feats.mpp else -1,
            target_mpp=feats.target_mpp if feats.target_mpp else -1,
            writer="napari-pathalign",
        )
    return path


def read_features(path: Path) -> SlideFeatures:
    """Read ours or TRIDENT's files (TRIDENT has no encoder/mpp attributes: they read as unknown)."""
    import h5py

    with h5py.File(path, "r") as f:
        if "coords" not in f or "features" not in f:
            raise ValueError(f"{path}: not a patch-feature file (needs 'coords' and 'features' datasets)")
        coords = f["coords"]
        a = dict(coords.attrs)
        feats = np.asarray(f["features"], dtype=np.float32)
        if feats.ndim == 3 and feats.shape[0] == 1:  # CLAM writes (1, N, D)
            feats = feats[0]
        xy = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        if len(xy) != len(feats):
            raise ValueError(f"{path}: {len(xy)} coords but {len(feats)} feature rows")
        mag0, target = float(a.get("level0_magnification", -1)), float(a.get("target_magnification", -1))
        mpp = float(f.attrs.get("mpp", 10.0 / mag0 if mag0 > 0 else -1))
        target_mpp = float(f.attrs.get("target_mpp", 10.0 / target if target > 0 else -1))
        return SlideFeatures(
            features=feats,
            xy_level0=xy,
            patch_size=int(a.get("patch_size", 0)),
            size_level0=int(a.get("patch_size_level0", a.get("patch_size", 0))),
            target_mpp=target_mpp if target_mpp > 0 else None,
            mpp=mpp if mpp > 0 else None,
            shape_level0=(int(a.get("level0_height", 0)), int(a.get("level0_width", 0))),
            encoder=str(f["features"].attrs.get("encoder", "unknown")),
            weights_hash=str(f["features"].attrs.get("weights_hash", "unknown")),
            cache_key=str(f.attrs.get("cache_key", "")),
        )
