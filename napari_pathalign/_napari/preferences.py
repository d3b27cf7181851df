"""Opt in to this plugin's lazy reader as napari's default for slide files: ``pathalign set-default-reader``.

napari's built-in reader also claims ``*.svs`` and ``*.tif`` and loads level 0 eagerly (12 s and
3.9 GB for a 40k x 30k slide), and with two candidate readers napari asks the user to choose. A
plugin must not change a user's persistent preferences unasked, so nothing here runs on its own:
the user asks for it once (the command above, documented in the README), and even then only the
slide patterns the user has not assigned a reader are recorded; a user's own choice is never
overwritten. Without it napari asks which reader to use, and remembers the answer if told to.
"""

from __future__ import annotations

PLUGIN = "napari-pathalign"
SLIDE_PATTERNS = ("*.svs", "*.tif", "*.tiff", "*.ome.tif", "*.ome.tiff", "*.ndpi", "*.dcm")


def claim_slide_extensions() -> list[str]:
    """Prefer this reader for the slide patterns the user has not assigned; returns those claimed."""
    from napari.settings import get_settings

    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    claimed = [p for p in SLIDE_PATTERNS if p not in current]
    if claimed:
        plugins.extension2reader = {**current, **{p: PLUGIN for p in claimed}}
    return claimed
