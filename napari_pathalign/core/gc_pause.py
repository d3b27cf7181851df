"""Keep Python's cycle collector off the GUI's back while a worker builds millions of small objects.

A QuPath file of 100,000 cells parses into millions of coordinate lists. While they live, every full pass of
the cycle collector walks all of them (0.5-1 s each), and a pass runs in whichever thread happens to allocate,
holding the interpreter: the window freezes even though the work is in a worker. So the worker pauses the
collector while it builds, and afterwards moves everything then alive into the permanent generation
(``gc.freeze``), which later passes skip. Those objects are still freed by reference counting as usual; only
a reference cycle among them would wait for ``gc.unfreeze`` to be found (annotations hold none).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def cycle_collector_paused():
    """Disable the cycle collector inside; on leaving, freeze what was built and restore the collector's state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
