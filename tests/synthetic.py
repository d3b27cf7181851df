"""Synthetic slides written by tests: smooth tissue-like patterns, JPEG-friendly."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tissue_like(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth pink-and-purple RGB pattern on white: JPEG-friendly and easy to eyeball."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    fx, fy = rng.uniform(0.002, 0.01, 2)
    wave = (np.sin(xx * fx * 6.28) * np.cos(yy * fy * 6.28) + 1) / 2  # (H, W) in [0, 1]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 255 - 60 * wave
    img[..., 1] = 255 - 150 * wave
    img[..., 2] = 255 - 70 * wave
    return img


def write_pyramid(path: Path, shape=(2048, 3072), levels=3, tile=256, compression="jpeg", mpp=0.5, **kw) -> Path:
    """A tiled pyramidal TIFF (level 0 then 2x reductions as SubIFDs), as converters write them."""
    import tifffile

    img = tissue_like(shape)
    res = (1e4 / mpp, 1e4 / mpp) if mpp else None
    with tifffile.TiffWriter(path, bigtiff=kw.pop("bigtiff", False)) as tw:
        opts = dict(tile=(tile, tile), compression=compression, photometric="rgb", **kw)
        tw.write(img, subifds=levels - 1, resolution=res, resolutionunit="CENTIMETER" if mpp else None, **opts)
        for k in range(1, levels):
            img = img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2]
            img = img.reshape(img.shape[0] // 2, 2, img.shape[1] // 2, 2, 3).mean(axis=(1, 3)).astype(np.uint8)
            tw.write(img, subfiletype=1, **opts)
    return path


def write_big_pyramid(path: Path, side: int = 8192, tile: int = 256, min_side: int = 512) -> Path:
    """A large JPEG pyramid written tile by tile (never the whole image in memory)."""
    import tifffile

    sides = [side]
    while sides[-1] // 2 >= min_side:
        sides.append(sides[-1] // 2)
    base = tissue_like((tile * 4, tile * 4))

    def tiles(n: int):
        for r in range(n // tile):
            for c in range(n // tile):
                yield base[(r % 4) * tile : (r % 4 + 1) * tile, (c % 4) * tile : (c % 4 + 1) * tile]

    opts = dict(tile=(tile, tile), compression="jpeg", photometric="rgb", dtype=np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(
            tiles(sides[0]),
            shape=(sides[0], sides[0], 3),
            subifds=len(sides) - 1,
            resolution=(4e4, 4e4),
            resolutionunit="CENTIMETER",
            **opts,
        )
        for n in sides[1:]:
            tw.write(tiles(n), shape=(n, n, 3), subfiletype=1, **opts)
    return path
