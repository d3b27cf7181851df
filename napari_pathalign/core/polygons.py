"""Plane geometry of drawn shapes (numpy only): areas, lengths, containment, ellipses as polygons.

Vertices are (N, 2) arrays in one frame (level-0 (x, y) pixels, or µm); results are in that frame's units.
"""

from __future__ import annotations

import numpy as np


def ring_area(xy: np.ndarray) -> float:
    """Area enclosed by one ring (shoelace formula), open or closed, in the square of the vertices' unit."""
    xy = np.asarray(xy, float)
    if len(xy) < 3:
        return 0.0
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def polygon_area(rings: list) -> float:
    """Area of a polygon given as [exterior, hole, hole, ...]: the holes are taken out."""
    if not len(rings):
        return 0.0
    return max(0.0, ring_area(rings[0]) - sum(ring_area(hole) for hole in rings[1:]))


def path_length(xy: np.ndarray) -> float:
    """Length of a polyline through the vertices in order."""
    xy = np.asarray(xy, float)
    return float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()) if len(xy) > 1 else 0.0


def point_in_ring(point, ring: np.ndarray) -> bool:
    """Whether ``point`` (x, y) lies inside ``ring`` (even-odd rule)."""
    ring = np.asarray(ring, float)
    x, y = float(point[0]), float(point[1])
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(crosses & (x < x_at)) % 2)


def ellipse_ring(corners: np.ndarray, n: int = 64) -> np.ndarray:
    """The ellipse inscribed in a (possibly rotated) box given by its 4 corners in order, as (n, 2) vertices."""
    corners = np.asarray(corners, float)
    centre = corners.mean(0)
    half_a = (corners[1] - corners[0]) / 2  # half of one side: the first semi-axis
    half_b = (corners[3] - corners[0]) / 2  # half of the adjacent side: the second
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    return centre + np.cos(t) * half_a + np.sin(t) * half_b
