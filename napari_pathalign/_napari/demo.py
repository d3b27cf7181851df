"""The demo window: napari with the plugin, the sample slide and the slide-information dock."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import napari

from napari_pathalign._napari.sample_data import DEMO_SLIDE

PLUGIN = "napari-pathalign"


def showcase_slide() -> Path | None:
    """The showcase lymph node (``demo/showcase.py``: about 8 x 6 mm, from held-out tiles), built once into
    the user data folder from ../shared/data/tiles; None without the tiles (the small sample serves)."""
    from platformdirs import user_data_dir

    from napari_pathalign.demo.showcase import make_showcase_slide

    tiles = shared_tiles()
    if tiles is None:
        return None
    print("building the showcase slide from held-out tiles (once, about a minute) ...", flush=True)
    return make_showcase_slide(tiles, Path(user_data_dir("napari-pathalign")) / "showcase", "pcam")


def build_viewer(show: bool = True, slide: Path | None = None) -> napari.Viewer:
    """CMU-1 and, beside it, the demo lymph node: ``slide`` (the showcase) or the small packaged sample."""
    viewer = napari.Viewer(title="napari-pathalign demo", show=show)
    viewer.open_sample(PLUGIN, "cmu1-small-region")
    demo = None
    if slide is not None:
        demo = viewer.open(str(slide), plugin=PLUGIN)[0]
    elif (files("napari_pathalign.resources") / DEMO_SLIDE).is_file():
        demo = viewer.open_sample(PLUGIN, "demo-lymph-node")[0]
    if demo is not None:
        cmu1 = viewer.layers[0]
        gap_um = 200.0
        demo.translate = (0.0, cmu1.extent.world[1][1] + gap_um)  # beside the real slide, in µm
    viewer.layers.selection.active = viewer.layers[-1]
    viewer.scale_bar.visible = True  # the slide is in µm: the bar shows it
    viewer.window.resize(1920, 1200)  # three docks and the slide between them
    viewer.reset_view()
    return viewer


DEMO_PHRASE = "metastatic carcinoma"


def open_workspace(viewer: napari.Viewer):
    """Dock the workspace on the demo lymph node, Analyse it, then show where the tumour phrase matches."""
    from napari_pathalign._napari.workspace_widget import WorkspaceWidget

    widget = WorkspaceWidget(viewer)
    viewer.window.add_dock_widget(widget, name="PathAlign workspace", area="left")
    slide_layer = viewer.layers.selection.active
    worker = widget.analyse()
    if worker is not None:
        worker.returned.connect(
            lambda _: (widget.tabs.setCurrentIndex(1), widget.text.show_requested.emit(DEMO_PHRASE))
        )
    return widget, slide_layer


DEMO_QUESTION = "Does this lymph node contain metastasis?"  # worded as a pathologist would, not as trained
DEMO_FOLLOW_UP = "And how much?"  # read with the conversation


def open_report_and_chat(viewer: napari.Viewer, workspace):
    """Report and Chat docks on the right; once the analysis is ready: a draft, then one question."""
    from napari_pathalign._napari.chat_widget import ChatWidget
    from napari_pathalign._napari.report_widget import ReportWidget

    report, chat = ReportWidget(viewer), ChatWidget(viewer)
    viewer.window.add_dock_widget(report, name="Report", area="right")
    viewer.window.add_dock_widget(chat, name="Chat", area="right")
    report.layer_changed()
    chat.layer_changed()
    report.confirm = lambda question: True  # the demo replaces an earlier demo draft without asking

    def start(_):
        worker = report.start_draft()
        chat.demo_question_restored = any(
            chat.conversation.item(i).text() == f"Q: {DEMO_QUESTION}" for i in range(chat.conversation.count())
        )
        if (
            worker is not None and not chat.demo_question_restored
        ):  # an earlier demo's question is restored from the store: not asked again
            worker.finished.connect(lambda: _ask_then(chat, DEMO_QUESTION, DEMO_FOLLOW_UP))

    if workspace.worker is not None:
        workspace.worker.returned.connect(start)
    return report, chat


def _ask_then(chat, first: str, then: str) -> None:
    worker = chat.ask(first)
    if worker is not None:
        worker.finished.connect(lambda: chat.ask(then))


def shared_tiles() -> Path | None:
    """../shared/data/tiles beside the project (the demo library is built from it on first run)."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        tiles = root.parent / "shared" / "data" / "tiles"
        if tiles.is_dir():
            return tiles
    return None


def demo_library_folder() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-pathalign")) / "demo-library"


def open_similar_cases(viewer: napari.Viewer, slide_layer):
    """Dock "Similar cases", build the demo library on first run (a worker), then search by the slide."""
    from napari.qt.threading import thread_worker

    from napari_pathalign._napari.search_widget import SearchWidget

    widget = SearchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Similar cases", area="left", tabify=True)  # a tab beside the workspace
    tiles = shared_tiles()
    folder = demo_library_folder()
    if tiles is None and not (folder / "library").is_dir():
        widget.say(
            (
                "The demo library is built from ../shared/data/tiles, which is not beside the project; open "
                "a library instead."
            )
        )
        return widget
    exclude = (slide_layer.metadata["slide"].path,)

    @thread_worker
    def build():
        from napari_pathalign.demo.library import iter_demo_library

        model = widget.registry.model("embedded-r", "auto")
        encoder = widget.registry.encoder("embedded", None, "auto")
        yield from iter_demo_library(tiles, folder, model, encoder, exclude)

    def search():
        if widget.open_library(folder / "library") is not None:
            widget.educator.setChecked(False)
            viewer.layers.selection.active = slide_layer
            widget.search()

    worker = build(_ignore_errors=True)
    worker.yielded.connect(widget.say)
    worker.errored.connect(lambda exc: widget.say(f"Demo library: {exc}", error=True))
    worker.returned.connect(lambda _: search())
    worker.start()
    widget.demo_worker = worker
    return widget


def _wait(condition, seconds: float = 300.0) -> bool:
    import time

    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def _raise_dock(viewer: napari.Viewer, widget) -> None:
    dock = widget.parent()
    while dock is not None and not hasattr(dock, "raise_"):
        dock = dock.parent()
    if dock is not None:
        dock.raise_()


def _frame(viewer: napari.Viewer, layer) -> None:
    """Fit the view to one slide layer (the demo lymph node with its heatmap)."""
    viewer.fit_to_view(layers=[layer])


def run_demo(screenshot: Path | None = None) -> Path | None:
    """Open the demo window; with ``screenshot``, save the whole window there and close it."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = build_viewer(show=True, slide=showcase_slide())
    widget, slide_layer = open_workspace(viewer)
    search = open_similar_cases(viewer, slide_layer)
    report, chat = open_report_and_chat(viewer, widget)
    if screenshot is None:
        QTimer.singleShot(300, lambda: _frame(viewer, slide_layer))  # fit again once the docks have taken their width
        napari.run()
        return None
    if not _wait(lambda: widget.heatmap_layer is not None or "failed" in widget.status.text().lower()):
        print("warning: the workspace did not finish analysing in time; the screenshot shows it unfinished")
    if not _wait(
        lambda: bool(search.hits) or "rror" in search.status.text() or "not beside" in search.status.text(), 600
    ):
        print("warning: the similar-cases search did not finish in time")
    if not _wait(
        lambda: (
            sum(a is not None for a in chat.answers) >= 2
            or "ould not" in chat.status.text()
            or (report.draft is not None and getattr(chat, "demo_question_restored", False))
        ),
        300,
    ):
        print("warning: the draft and the demo question did not finish in time")
    _raise_dock(viewer, widget)  # the workspace tab in front: the screenshot shows its heatmap controls
    for _ in range(10):  # let the window lay out its docks
        QApplication.processEvents()
    _frame(viewer, slide_layer)
    for _ in range(20):  # let napari fetch the visible tiles and draw them
        QApplication.processEvents()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
    viewer.close()
    return screenshot
