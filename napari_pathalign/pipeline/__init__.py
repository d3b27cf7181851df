"""The 0.1 import paths, kept so that code written against them runs unchanged.

``pipeline/`` was split into layers (``engine``, ``reporting``, ``core``: docs/architecture.md).
New code imports from those; these modules only re-export, and nothing in the package imports them.
"""
