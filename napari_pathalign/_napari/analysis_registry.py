"""One ``SlideAnalysis`` per slide layer, and each model loaded once, shared by every dock of a viewer.

Kept per viewer (a weak map from the viewer), so closing a viewer frees its analyses and models,
and two docks asking about the same layer get the same object: nothing is computed twice.
"""

from __future__ import annotations

import threading
import weakref


class AnalysisRegistry:
    """Analyses by slide layer (keyed by the layer's Slide object) and loaded models by name."""

    def __init__(self):
        self._analyses: dict[int, object] = {}  # id(slide) -> SlideAnalysis
        self._slides: dict[int, object] = {}  # id(slide) -> slide (keeps the id valid)
        self.models: dict[tuple, object] = {}  # (spec, device) -> PathAlign
        self.encoders: dict[tuple, object] = {}  # (name, weights, device) -> PatchEncoder
        self._loading = threading.Lock()  # the warm-up and an Analyse may ask for the same model at once
        self.links = None  # the docks' DockLinks (signals between docks), made by the first dock that needs them

    def get(self, slide):
        return self._analyses.get(id(slide)) if slide is not None else None

    def put(self, slide, analysis) -> None:
        self._analyses[id(slide)] = analysis
        self._slides[id(slide)] = slide

    def drop(self, slide) -> None:
        self._analyses.pop(id(slide), None)
        self._slides.pop(id(slide), None)

    def model(self, spec: str, device: str):
        """A loaded PathAlign for a name or folder (loaded on first use; call from a worker)."""
        from napari_pathalign.models.pathalign import PathAlign

        key = (str(spec), device)
        with self._loading:
            if key not in self.models:
                self.models[key] = PathAlign.load(spec, device=device)
            return self.models[key]

    def iter_ready(self, slide, device: str = "auto"):
        """Generator of progress; returns the slide's prepared analysis (the default models), made once."""
        from napari_pathalign.reporting.analysis import SlideAnalysis

        analysis = self.get(slide)
        if analysis is None or not analysis.ready:
            analysis = SlideAnalysis(
                slide,
                encoder=self.encoder("embedded", None, device),
                model=self.model("embedded", device),
                retrieval_model=self.model("embedded-r", device),
            )
            yield from analysis.iter_prepare()
            self.put(slide, analysis)
        return analysis

    def encoder(self, name: str, weights: str | None, device: str):
        from napari_pathalign.models.encoders import load_patch_encoder

        key = (name, weights, device)
        with self._loading:
            if key not in self.encoders:
                self.encoders[key] = load_patch_encoder(name, weights, device)
            return self.encoders[key]


_REGISTRIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def registry_of(viewer) -> AnalysisRegistry:
    """The registry shared by all PathAlign docks of ``viewer``."""
    if viewer not in _REGISTRIES:
        _REGISTRIES[viewer] = AnalysisRegistry()
    return _REGISTRIES[viewer]
