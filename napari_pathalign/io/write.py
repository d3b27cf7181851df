"""Writing pyramidal tiled TIFF slides (JPEG, with mpp) that our reader and OpenSlide both open.

Levels go in consecutive top-level IFDs, each a 2x reduction marked as reduced-resolution: OpenSlide's
generic-TIFF reader sees every level (it ignores SubIFD pyramids), and so does tifffile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_pathalign.core.atomic import atomic_write


def write_pyramid_tiff(
    path: str | Path, rgb: np.ndarray, mpp: float, tile: int = 256, min_side: int = 512, quality: int = 90
) -> Path:
    """Write ``rgb`` (H, W, 3) uint8 as a JPEG tiled pyramid down to ``min_side``; atomic."""
    import tifffile

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if not mpp > 0:
        raise ValueError(f"mpp must be positive µm per pixel, got {mpp!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = dict(
        tile=(tile, tile),
        compression="jpeg",
        compressionargs={"level": quality},
        photometric="rgb",
        resolutionunit="CENTIMETER",
    )
    with atomic_write(path) as tmp:  # a slide is an ordinary file (0o644)
        with tifffile.TiffWriter(tmp, bigtiff=rgb.nbytes > 2**31) as tw:
            img, k = rgb, 0
            while True:
                px_per_cm = 1e4 / (mpp * 2**k)
                tw.write(img, resolution=(px_per_cm, px_per_cm), subfiletype=1 if k else 0, **opts)
                if min(img.shape[:2]) // 2 < min_side:
                    break
                h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
                img = img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
                k += 1
    return path
