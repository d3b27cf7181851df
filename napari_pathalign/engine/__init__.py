"""The engine: slide -> features -> slide embeddings, and what the models say about one slide
(``SlideAnalysis``: maps, zero-shot, regions, similar-case queries). No report logic, no UI."""
