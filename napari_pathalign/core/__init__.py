"""The bottom layer: shared types and helpers that every other layer may use (numpy only, no torch, no Qt).

``Heatmap``, ``GridConfig``, ``Progress``, the progress-generator helpers, ``atomic_write``, the
resources folder and small metrics. Nothing here imports any other part of the package.
"""
