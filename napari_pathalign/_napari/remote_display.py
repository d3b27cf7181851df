"""A slide on a server in the viewer: tiles that are slow or fail are drawn blank rather than freezing the
window (``io/tiles.py: TileReader.display_tile``); this says so, once per episode, and redraws the slide's
layers when the missing tiles arrive."""

from __future__ import annotations

import time
import weakref

from napari.utils.notifications import show_warning
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QApplication

REDRAW_MS = 250  # tiles arriving together are redrawn together
SAY_AGAIN_S = 30.0  # a fault is said again only after this long

_relays: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # slide -> its relay (kept alive with it)


class _Relay(QObject):
    """Lives on the GUI thread: the signals emitted by fetch threads are queued to it."""

    fault = Signal(str)
    ready = Signal()

    def __init__(self, slide):
        super().__init__()
        self.slide = weakref.ref(slide)
        self.said = -SAY_AGAIN_S
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.ready.connect(self.timer.start)
        self.fault.connect(self.say)

    def say(self, text: str) -> None:
        if time.monotonic() - self.said < SAY_AGAIN_S:
            return
        self.said = time.monotonic()
        slide = self.slide()
        name = slide.path.name if slide is not None else "the slide"
        show_warning(
            f"{name}: the archive is slow or not answering ({text}). Those tiles are drawn blank and fill in when "
            "they arrive; the viewer keeps working."
        )

    def redraw(self) -> None:
        import napari

        slide, viewer = self.slide(), napari.current_viewer()
        if slide is None or viewer is None:
            return
        for layer in viewer.layers:
            if (getattr(layer, "metadata", None) or {}).get("slide") is slide:
                layer.refresh()


def watch_remote_display(slide) -> None:
    """Report blank-drawn tiles of a slide on a server and redraw it as they arrive (no-op for a local file)."""
    if not slide.remote or slide in _relays:
        return
    relay = _Relay(slide)
    app = QApplication.instance()
    if app is not None:
        relay.moveToThread(app.thread())  # made in a worker (the PACS dock opens there): still served by the GUI
    _relays[slide] = relay
    slide.watch_display(on_fault=lambda exc: relay.fault.emit(str(exc)), on_ready=relay.ready.emit)
