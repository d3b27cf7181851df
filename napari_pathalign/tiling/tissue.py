"""Tissue detection on a low-resolution view of the slide: stained tissue in, glass and ink out.

Colour rules in HSV, chosen from what stains and inks are, not from one file:
- stained tissue (H&E pink/purple, IHC blue counterstain and brown DAB) is saturated (S > 0.07);
  glass is bright and grey;
- no stain is green or cyan: saturated hues 70-200 degrees are marker ink;
- hematoxylin is blue-purple but pale (S < 0.3); saturated blue (190-260 degrees, S > 0.3) is ink;
- pure saturated red (hue within 20 degrees of red, S > 0.5) is red ink (eosin is pink, S < 0.5;
  dense red blood cells look the same and are lost with it);
- very dark and grey (V < 0.3, S < 0.35) is black marker, dust or a coverslip edge.
Paler green or pure-red pixels that touch sure ink are ink too (hysteresis), and the ink mask is
dilated a little for the halo; small specks and holes are cleaned up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASK_MPP = 8.0  # µm per mask pixel when the slide has mpp: 1/16 of 20x, fine enough for 224-px patches
MIN_OBJECT_UM2 = 100.0 * 100.0  # specks smaller than a 100 µm square are dust, not a biopsy
MIN_HOLE_UM2 = 50.0 * 50.0  # lumens smaller than this are filled


@dataclass
class TissueMask:
    """Boolean tissue mask over the whole slide at low resolution."""

    mask: np.ndarray  # (H, W) bool, True where there is tissue
    ink: np.ndarray  # (H, W) bool, marker ink that was rejected (for display)
    downsample: tuple[float, float]  # level-0 pixels per mask pixel, (y, x)
    mpp: float | None  # µm per mask pixel, None when the slide has no mpp

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def tissue_mask(slide, mask_mpp: float = MASK_MPP, max_side: int = 4096) -> TissueMask:
    """Find tissue on a thumbnail of ``slide`` at about ``mask_mpp`` µm per pixel."""
    h0, w0 = slide.shape_level0
    if slide.mpp:
        side = int(np.clip(max(h0, w0) * slide.mpp / mask_mpp, 64, max_side))
    else:
        side = min(2048, max(h0, w0))
    rgb = slide.thumbnail(side)
    ds = (h0 / rgb.shape[0], w0 / rgb.shape[1])
    px_um = slide.mpp * (ds[0] + ds[1]) / 2 if slide.mpp else None
    mask, ink = detect_tissue(rgb, px_um)
    return TissueMask(mask, ink, ds, px_um)


def detect_tissue(rgb: np.ndarray, mpp: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tissue and ink masks of an RGB image (H, W, 3) uint8; ``mpp`` sizes the clean-up."""
    from scipy import ndimage
    from skimage import morphology
    from skimage.color import rgb2hsv

    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape!r}")
    hsv = rgb2hsv(rgb[..., :3])
    hue, sat, val = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]

    stained = sat > 0.07
    green, blue = (hue >= 70) & (hue < 190), (hue >= 190) & (hue < 260)
    sure_ink = (green & (sat > 0.15)) | (blue & (sat > 0.3)) | (((hue >= 340) | (hue < 20)) & (sat > 0.5))
    sure_ink |= (val < 0.3) & (sat < 0.35)  # black marker, dust, coverslip edges
    # hysteresis: the pale, blurred edge of a stroke is ink when it touches a sure stroke. Only
    # for hues no stain has (green) or only blood has (pure red); pale blue is hematoxylin.
    pure_red = (hue >= 350) | (hue < 15)
    pale_ink = (green & (sat > 0.07)) | (pure_red & (sat > 0.3)) | sure_ink
    labels, _ = ndimage.label(pale_ink)
    ink = np.isin(labels, np.unique(labels[sure_ink & (labels > 0)]))

    # sizes in mask pixels: physical when mpp is known, else relative to the image
    px_area = mpp * mpp if mpp else None
    min_object = int(MIN_OBJECT_UM2 / px_area) if px_area else max(4, rgb.shape[0] * rgb.shape[1] // 5000)
    min_hole = int(MIN_HOLE_UM2 / px_area) if px_area else max(4, rgb.shape[0] * rgb.shape[1] // 20000)
    halo = max(1, int(round(16.0 / mpp))) if mpp else max(1, min(rgb.shape[:2]) // 200)

    ink = morphology.remove_small_objects(ink, max_size=max(2, min_object // 16))
    ink = ndimage.binary_dilation(ink, iterations=halo)  # the pen's pale edge is ink too
    tissue = stained & ~ink
    tissue = ndimage.binary_opening(tissue, iterations=1)
    tissue = morphology.remove_small_objects(tissue, max_size=max(1, min_object))
    tissue = morphology.remove_small_holes(tissue, max_size=max(1, min_hole)) & ~ink
    return tissue, ink
