"""0.1 path of ``SlideAnalysis`` (now ``reporting.analysis``; its prepared state is ``engine.analysis``)."""

from __future__ import annotations

from napari_pathalign.core.progress import Progress
from napari_pathalign.engine.features import default_cache_dir
from napari_pathalign.engine.maps import background_vocabulary
from napari_pathalign.reporting.analysis import SlideAnalysis

__all__ = ["Progress", "SlideAnalysis", "background_vocabulary", "default_cache_dir"]
