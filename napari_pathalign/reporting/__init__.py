"""Reporting: drafts, answers and the checks of their claims against the slide, the report vocabulary,
the pathologist's report store. Works over the engine's ``PreparedSlide``;
``reporting.analysis.SlideAnalysis`` binds it all as methods. Never imports the UI."""
