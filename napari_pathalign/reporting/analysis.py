"""``SlideAnalysis``: one slide's analysis as users, commands and docks hold it.

The engine's ``PreparedSlide`` (the prepared state, its maps and zero-shot) plus what reporting says
over it, under short names: ``iter_draft``, ``iter_answer``, ``statements_at``, ``check``. The logic lives in
``reporting/drafting.py`` as functions of an analysis; bound here they read as methods,
``analysis.iter_draft()`` == ``drafting.iter_draft(analysis)``.

Its report ontology (``ontology``) is the one given, else the generation model's own (the
``ontology.json`` its checkpoint folder holds; the embedded model's ships in ``resources/``).
"""

from __future__ import annotations

from pathlib import Path

from napari_pathalign.engine.analysis import PreparedSlide
from napari_pathalign.engine.zero_shot import slide_zero_shot
from napari_pathalign.reporting import drafting
from napari_pathalign.reporting.check import check_report
from napari_pathalign.reporting.ontology import Ontology, load_ontology

__all__ = ["SlideAnalysis", "model_ontology"]


class SlideAnalysis(PreparedSlide):
    """One slide through one patch encoder and two PathAlign models, with drafts, answers and evidence."""

    def __init__(self, slide, *args, ontology: Ontology | str | Path | None = None, **kwargs):
        """As ``PreparedSlide``; ``ontology``: an ``Ontology``, a JSON file, or None for the model's own."""
        super().__init__(slide, *args, **kwargs)
        self.ontology_spec = ontology if isinstance(ontology, Ontology) or ontology is None else load_ontology(ontology)

    @classmethod
    def from_parent(cls, parent, polygon_xy_level0):
        child = super().from_parent(parent, polygon_xy_level0)
        child.ontology_spec = getattr(parent, "ontology_spec", None)
        return child

    @property
    def ontology(self) -> Ontology:
        """The report ontology claims are read with: the one given, else the generation model's own."""
        if self.ontology_spec is not None:
            return self.ontology_spec
        return model_ontology(self.models.get("generation"))

    @property
    def model_ontology(self) -> Ontology:
        """The ontology the generation model was trained with (its own words)."""
        return model_ontology(self.models.get("generation"))

    def zero_shot(self, classes: dict[str, list[str]] | None = None, model: str = "retrieval"):
        """``engine.zero_shot.slide_zero_shot``; without ``classes``, the ontology's 'diagnosis' set."""
        if classes is None:
            sets, default = self.ontology.class_sets()
            classes = sets[default]
        return slide_zero_shot(self, classes, model)

    iter_draft = drafting.iter_draft
    iter_answer = drafting.iter_answer
    statements_at = drafting.statements_at
    check = check_report  # analysis.check(text) -> ReportCheck


def model_ontology(model) -> Ontology:
    """A PathAlign model's own ontology: ``ontology.json`` in its checkpoint folder, else the embedded one
    (the vocabulary of the demo reports every shipped model was trained on)."""
    folder = getattr(model, "source_path", None)
    if folder is not None and (Path(folder) / "ontology.json").is_file():
        return load_ontology(Path(folder) / "ontology.json")
    return load_ontology()
