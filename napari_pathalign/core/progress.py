"""``Progress``: one step of a long job, as the core yields it and a dock or a progress bar shows it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Progress:
    """One step of a long job (``SlideAnalysis.iter_prepare``): what runs, and how far along it is."""

    stage: str  # 'models', 'features', 'slide embedding', 'regions', 'attention', 'ready'
    done: int  # units done in this stage
    total: int  # units in this stage
    message: str = ""  # for the status line

    def __str__(self) -> str:
        return self.message or f"{self.stage}: {self.done}/{self.total}"
