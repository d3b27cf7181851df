"""Microscope magnifications on screen: 40x shows 0.25 µm per screen pixel, 20x 0.5 µm, and so on.

The slide layer is in µm, and napari's ``camera.zoom`` is screen pixels per world unit, so the
magnification is ``10 * zoom`` (10x = 1 µm per screen pixel) whatever the slide's own µm/px. A slide
without µm/px is in pixel units: no magnification can be given, and none is.
"""

from __future__ import annotations

MAGNIFICATIONS = (1.25, 2.5, 5.0, 10.0, 20.0, 40.0)  # the objectives a pathologist steps through
UM_PER_SCREEN_PX_AT_10X = 1.0  # 40x = 0.25 µm per screen pixel
SHORTCUTS = {m: f"Alt-{k}" for k, m in enumerate(MAGNIFICATIONS, start=1)}  # Alt-1 = 1.25x ... Alt-6 = 40x


def zoom_for(magnification: float) -> float:
    """napari ``camera.zoom`` (screen px per µm) that shows the slide at ``magnification``."""
    if magnification <= 0:
        raise ValueError(f"magnification must be positive, got {magnification!r}; e.g. 20 for 20x")
    return magnification / (10.0 * UM_PER_SCREEN_PX_AT_10X)


def magnification_of(zoom: float) -> float:
    """The magnification a ``camera.zoom`` (screen px per µm) shows."""
    return 10.0 * UM_PER_SCREEN_PX_AT_10X * zoom


def label(magnification: float) -> str:
    """'1.25x', '20x', '7.3x'."""
    return f"{magnification:.3g}x" if magnification < 10 else f"{magnification:.0f}x"
