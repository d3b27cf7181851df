"""Reporting: drafts, answers and the checks of their claims against the slide, the report vocabulary,
the pathologist's report store. Works over an ``engine.SlideAnalysis``; never imports the UI."""
