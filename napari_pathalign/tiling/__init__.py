"""Tissue detection, patch grids at a target resolution, tile-aligned patch extraction (no torch)."""
