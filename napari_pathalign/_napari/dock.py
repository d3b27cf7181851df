"""``SlideDock``: what every PathAlign dock shares, written once.

- the viewer and its analysis registry (one ``SlideAnalysis`` per slide, shared by all docks);
- the selected slide layer, and a hook called when the selection moves to another slide;
- a status line (plain for progress, red plus a notification for errors);
- one worker at a time: start it, stop (cancel) it, know whether one runs;
- viewer callbacks that are disconnected when the dock closes, so a closed dock is never called.
"""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QLabel, QWidget

from napari_pathalign._napari.analysis_registry import registry_of
from napari_pathalign._napari.scope_banner import ScopeBanner
from napari_pathalign._napari.slide_info import slide_of
from napari_pathalign._napari.status_line import show_status


class SlideDock(QWidget):
    """Base of the slide docks; a subclass sets ``title`` and overrides ``layer_changed``."""

    title = "PathAlign"  # names the dock in error notifications

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.registry = registry_of(napari_viewer)
        self.worker = None  # the running thread_worker, if any
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.scope_banner = ScopeBanner()  # is the slide tissue the model knows? (subclasses place it on top)
        self._connections: list = []  # (napari event emitter, callback) to disconnect on close
        self._mouse_callbacks: list = []  # viewer.mouse_drag_callbacks this dock added

    # ------------------------------------------------------------------ viewer callbacks
    def connect_viewer(self, emitter, callback) -> None:
        """``emitter.connect(callback)``, undone when the dock closes."""
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    def follow_slide_selection(self) -> None:
        """Call ``layer_changed`` whenever the active layer changes (and once now)."""
        self.connect_viewer(self.viewer.layers.selection.events.active, self.layer_changed)
        self.layer_changed()

    def add_mouse_callback(self, callback) -> None:
        """A viewer mouse-drag callback (clicks on the slide), removed when the dock closes."""
        self.viewer.mouse_drag_callbacks.append(callback)
        self._mouse_callbacks.append(callback)

    def disconnect_viewer(self) -> None:
        """Undo every ``connect_viewer`` and ``add_mouse_callback``; safe to call twice."""
        for emitter, callback in self._connections:
            try:
                emitter.disconnect(callback)
            except (RuntimeError, TypeError, ValueError):  # the viewer went first
                pass
        self._connections.clear()
        for callback in self._mouse_callbacks:
            if callback in self.viewer.mouse_drag_callbacks:
                self.viewer.mouse_drag_callbacks.remove(callback)
        self._mouse_callbacks.clear()

    def closeEvent(self, event):  # noqa: N802 (Qt)
        self.stop()
        self.disconnect_viewer()
        super().closeEvent(event)

    # ------------------------------------------------------------------ the slide
    def selected_slide_layer(self):
        """The active layer when it is a slide opened by PathAlign, else None."""
        layer = self.viewer.layers.selection.active
        return layer if slide_of(layer) is not None else None

    def layer_changed(self, *_) -> None:
        """The active layer changed; subclasses follow the slide here."""

    # ------------------------------------------------------------------ status and workers
    def say(self, text: str, error: bool = False) -> None:
        """The status line; an error is red and also a napari notification."""
        show_status(self.status, text, error, self.title)

    def show_scope(self, scope) -> None:
        """The in-scope banner for the slide's ``InScope`` (None hides it)."""
        self.scope_banner.show_scope(scope)

    @property
    def busy(self) -> bool:
        """Whether this dock's worker is still running."""
        return self.worker is not None and getattr(self.worker, "is_running", False)

    def start_worker(self, worker):
        """Start ``worker`` as this dock's current job (``stop`` cancels it); returns it."""
        self.worker = worker
        worker.start()
        return worker

    def stop(self, *_) -> None:
        """Cancel the running job between two of its steps (``thread_worker.quit``)."""
        if self.worker is not None:
            self.worker.quit()


class DockLinks(QObject):
    """Signals between the docks of one viewer, so that no dock holds another."""

    text_for_report = Signal(str)  # the Chat dock sends an answer; the Report dock appends it to its editor

    def __init__(self):
        super().__init__()
        self.report_docks = 0  # open Report docks listening (the Chat dock says so when there is none)


def dock_links(registry) -> DockLinks:
    """The viewer's ``DockLinks`` (made on first use, kept with its analysis registry)."""
    links = getattr(registry, "links", None)
    if links is None:
        links = registry.links = DockLinks()
    return links
