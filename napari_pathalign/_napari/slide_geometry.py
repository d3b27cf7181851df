"""From napari's world (µm, row-col) to a slide's level-0 (x, y) pixels: clicks, drawn shapes, the view."""

from __future__ import annotations

import napari
import numpy as np


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, where ``viewer.camera`` is deprecated)."""
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def level0_of_world(slide_layer, world_yx) -> tuple[float, float]:
    """A world (row, col) point -> level-0 (x, y) pixel coordinates of the slide under it."""
    t, s = slide_layer.translate[-2:], slide_layer.scale[-2:]
    y, x = (world_yx[-2] - t[0]) / s[0], (world_yx[-1] - t[1]) / s[1]
    return x + 0.5, y + 0.5  # napari: level-0 pixel i spans [i - 0.5, i + 0.5] in data units


def query_polygon(viewer, slide_layer) -> np.ndarray:
    """The selected shape, else the current view, as a (V, 2) level-0 (x, y) polygon of the slide."""
    shapes = [lyr for lyr in viewer.layers if isinstance(lyr, napari.layers.Shapes) and lyr.selected_data]
    if shapes:
        verts = np.asarray(shapes[-1].data[sorted(shapes[-1].selected_data)[0]])[:, -2:]  # (V, 2) layer data
        if len(verts) < 3:  # a box given by two corners
            (r0, c0), (r1, c1) = verts.min(0), verts.max(0)
            verts = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]])
        world = [shapes[-1].data_to_world(v) for v in verts]
    else:
        h, w = viewer.canvas.size if hasattr(viewer, "canvas") else (600, 800)
        cy, cx = viewer.camera.center[-2:]
        z = viewer.camera.zoom
        world = [
            (cy - h / 2 / z, cx - w / 2 / z),
            (cy - h / 2 / z, cx + w / 2 / z),
            (cy + h / 2 / z, cx + w / 2 / z),
            (cy + h / 2 / z, cx - w / 2 / z),
        ]
    return np.array([level0_of_world(slide_layer, p) for p in world])


SCOPES = ["whole slide", "current view", "selected shape"]  # where chat, check and zero-shot look


def scope_polygon(viewer, slide_layer, scope: str):
    """The level-0 (x, y) polygon a dock's scope names: None for the whole slide, else the view or the
    selected shape (a drawn one or an imported QuPath region alike); ValueError, in words, when no shape is
    selected."""
    if scope == "whole slide":
        return None
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
    if scope == "selected shape" and not any(
        isinstance(lyr, napari.layers.Shapes) and lyr.selected_data for lyr in viewer.layers
    ):
        raise ValueError(
            "no shape is selected: draw one with the Shapes tool (or import a QuPath region) and select it, "
            "or choose the whole slide"
        )
    return query_polygon(viewer, slide_layer)
