"""Keep Python's cycle collector off the GUI's back while a worker builds millions of small objects.

A QuPath file of 100,000 cells parses into millions of coordinate lists. While they live, every full pass of
the cycle collector walks all of them (0.5-1 s each), and a pass runs in whichever thread happens to allocate,
holding the interpreter: the window freezes even though the work is in a worker. So the worker pauses the
collector while it builds, and afterwards moves everything then alive into the permanent generation
(``gc.freeze``), which later passes skip. Those objects are still freed by reference counting as usual; only
a reference cycle among them (or among anything else alive at that moment, napari's own objects included)
would wait for ``gc.unfreeze`` to be found, so whoever keeps what was built calls ``release_frozen`` once it is
dropped (the Annotations dock does when the last imported layer is removed).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def cycle_collector_paused(freeze: bool = True):
    """Disable the cycle collector inside; on leaving, freeze what is alive (``freeze``: what was built is kept,
    e.g. a file's annotations; not for temporaries, e.g. an export's text) and restore the collector's state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()


def release_frozen() -> None:
    """What was frozen is dropped: give it back to the cycle collector (one full pass will scan it again)."""
    gc.unfreeze()
