"""Heatmaps as napari Image layers over the slide, in µm, with an honest name and a colour bar.

The raw grid (one pixel per patch, NaN = no patch = transparent) is the default. The smoothed view
is an upsampled, blurred copy for the eye only; its layer name says "smoothed, cosmetic".
"""

from __future__ import annotations

import numpy as np

from napari_pathalign.core.heatmap import Heatmap

SMOOTH_FACTOR = 4  # raster pixels per patch side in the smoothed view
HEATMAP_KEY = "pathalign_heatmap"  # layer.metadata key holding the Heatmap shown


def shown_heatmap(viewer, slide_layer) -> Heatmap | None:
    """The Heatmap of the top visible heatmap layer over ``slide_layer`` (None when none is shown)."""
    for layer in reversed(list(viewer.layers)):
        meta = getattr(layer, "metadata", None) or {}
        if layer.visible and HEATMAP_KEY in meta and meta.get("slide_layer") == slide_layer.name:
            return meta[HEATMAP_KEY]
    return None


def layer_name(heatmap: Heatmap, slide_name: str, smoothed: bool) -> str:
    return f"{slide_name}: {heatmap.title}" + (" (smoothed, cosmetic)" if smoothed else "")


def contrast_limits(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def smoothed_image(image: np.ndarray, factor: int = SMOOTH_FACTOR) -> np.ndarray:
    """Upsample ``factor`` x and blur inside the tissue only (normalised convolution); NaN stays outside."""
    from scipy.ndimage import gaussian_filter

    up = np.kron(image, np.ones((factor, factor), np.float32))  # (rows*f, cols*f)
    inside = np.isfinite(up)
    filled = np.where(inside, up, 0.0).astype(np.float32)
    num = gaussian_filter(filled, sigma=factor * 0.6)
    den = gaussian_filter(inside.astype(np.float32), sigma=factor * 0.6)
    out = num / np.maximum(den, 1e-6)
    out[~inside] = np.nan
    return out.astype(np.float32)


def heatmap_layer_data(
    heatmap: Heatmap, slide_layer, smoothed: bool = False, colormap: str = "inferno", opacity: float = 0.55
) -> tuple:
    """(data, kwargs, 'image') aligned with ``slide_layer`` (its translate is added to the raster's)."""
    r = heatmap.raster()
    image, scale, translate = r.image, r.scale, r.translate
    if smoothed:
        f = SMOOTH_FACTOR
        image = smoothed_image(r.image, f)
        scale = (r.scale[0] / f, r.scale[1] / f)
        # pixel (0, 0) of the raster covered [t - s/2, t + s/2]; its first sub-pixel's centre is s/(2f) in
        translate = tuple(t - s / 2 + s / (2 * f) for t, s in zip(r.translate, r.scale))
    base = tuple(float(t) for t in slide_layer.translate[-2:])
    kwargs = {
        "name": layer_name(heatmap, slide_layer.name, smoothed),
        "scale": scale,
        "units": tuple(slide_layer.units[-2:]),
        "translate": (translate[0] + base[0], translate[1] + base[1]),
        "colormap": colormap,
        "opacity": opacity,
        "blending": "translucent",
        "contrast_limits": contrast_limits(heatmap.values),
        "interpolation2d": "nearest",
        "metadata": {HEATMAP_KEY: heatmap, "slide_layer": slide_layer.name, "smoothed": smoothed},
    }
    return image, kwargs, "image"


def colorbar_rgb(colormap: str, lo: float, hi: float, width: int = 220, height: int = 14) -> np.ndarray:
    """(height, width, 3) uint8 strip of a napari colormap from lo (left) to hi (right)."""
    from napari.utils.colormaps import ensure_colormap

    cmap = ensure_colormap(colormap)
    rgba = cmap.map(np.linspace(0, 1, width))  # (width, 4)
    return np.repeat((rgba[None, :, :3] * 255).astype(np.uint8), height, axis=0)


def thumbnail_rgb(heatmap: Heatmap, colormap: str = "inferno", size: int = 56) -> np.ndarray:
    """(size, size, 3) uint8 picture of a heatmap's raw grid (grey where no patch): a gallery tile."""
    from napari.utils.colormaps import ensure_colormap
    from PIL import Image

    img = heatmap.raster().image
    lo, hi = contrast_limits(img)
    norm = np.clip((img - lo) / (hi - lo), 0, 1)
    rgba = ensure_colormap(colormap).map(np.nan_to_num(norm).ravel()).reshape(*img.shape, 4)
    rgb = (rgba[..., :3] * 255).astype(np.uint8)
    rgb[~np.isfinite(img)] = 60
    pic = Image.fromarray(rgb)
    scale = size / max(img.shape)
    pic = pic.resize((max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))), Image.NEAREST)
    canvas = Image.new("RGB", (size, size), (60, 60, 60))
    canvas.paste(pic, ((size - pic.width) // 2, (size - pic.height) // 2))
    return np.asarray(canvas)
