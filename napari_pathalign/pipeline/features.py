"""0.1 path of the patch-feature functions (now ``engine.features``; ``GridConfig`` is ``core.grid_config``)."""

from __future__ import annotations

from napari_pathalign.core.grid_config import GridConfig
from napari_pathalign.engine.features import (
    cache_key,
    default_cache_dir,
    embed_slide,
    iter_embed_slide,
    slide_fingerprint,
)

__all__ = ["GridConfig", "cache_key", "default_cache_dir", "embed_slide", "iter_embed_slide", "slide_fingerprint"]
