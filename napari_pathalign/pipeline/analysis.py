"""0.1 path of ``SlideAnalysis``, with the drafting and chat methods it had then (now ``reporting.drafting``)."""

from __future__ import annotations

from napari_pathalign.core.progress import Progress
from napari_pathalign.engine import analysis as engine_analysis
from napari_pathalign.engine.features import default_cache_dir
from napari_pathalign.engine.maps import background_vocabulary
from napari_pathalign.reporting import drafting

__all__ = ["Progress", "SlideAnalysis", "background_vocabulary", "default_cache_dir"]


class SlideAnalysis(engine_analysis.SlideAnalysis):
    """``engine.analysis.SlideAnalysis`` plus the 0.1 methods ``iter_draft``, ``iter_answer``, ``statements_at``."""

    iter_draft = drafting.iter_draft  # functions of an analysis, bound as methods
    iter_answer = drafting.iter_answer
    statements_at = drafting.statements_at
