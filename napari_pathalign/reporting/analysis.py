"""``SlideAnalysis``: one slide's analysis as users, commands and docks hold it.

The engine's ``PreparedSlide`` (the prepared state, its maps and zero-shot) plus what reporting says
over it, under short names: ``iter_draft``, ``iter_answer``, ``statements_at``. The logic lives in
``reporting/drafting.py`` as functions of an analysis; bound here they read as methods,
``analysis.iter_draft()`` == ``drafting.iter_draft(analysis)``.
"""

from __future__ import annotations

from napari_pathalign.engine.analysis import PreparedSlide
from napari_pathalign.reporting import drafting

__all__ = ["SlideAnalysis"]


class SlideAnalysis(PreparedSlide):
    """One slide through one patch encoder and two PathAlign models, with drafts, answers and evidence."""

    iter_draft = drafting.iter_draft
    iter_answer = drafting.iter_answer
    statements_at = drafting.statements_at
