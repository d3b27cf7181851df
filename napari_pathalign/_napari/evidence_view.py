"""Evidence on the slide for a drafted sentence or an answer: its heatmap layer and a gallery of its
top patches (click one: the viewer centres on it). Shared by the report and chat docks.

Maps, picked in the view: where the slide matches the sentence's words (the text heatmap, the
default: what a pathologist checks), what the slide-sentence similarity used (the attribution,
gradient x input: what a researcher checks) and what a measured claim counted (each patch's
probability of the class; the words' map for sentences without one)."""

from __future__ import annotations

import html

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QIcon
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from napari_pathalign._napari.heatmap_layers import heatmap_layer_data
from napari_pathalign._napari.workspace_panels import pixmap_of

EVIDENCE_LAYER = "evidence"  # suffix of the layer that shows the selected statement's evidence
MAPS = {
    "where the words match": "heatmap",
    "what the similarity used": "attribution",
    "what the claim measured": "measurement",
}  # picker text -> Evidence field


def patch_rgb(slide, xy_level0, size_level0: int, px: int = 64) -> np.ndarray:
    """(px, px, 3) picture of one patch, read at the level closest to ``px``."""
    from PIL import Image

    level = max(k for k, ds in enumerate(slide.downsamples) if k == 0 or size_level0 / ds >= px)
    side = max(1, int(round(size_level0 / slide.downsamples[level])))
    region = slide.read_region((int(xy_level0[0]), int(xy_level0[1])), (side, side), level=level)
    return np.asarray(Image.fromarray(np.ascontiguousarray(region[..., :3])).resize((px, px)))


class EvidenceView(QWidget):
    """Shows one statement's evidence: a heatmap layer over its slide and its top patches."""

    def __init__(self, viewer):
        super().__init__()
        self.viewer = viewer
        self.label = QLabel("Click a sentence to see its evidence on the slide.")
        self.label.setWordWrap(True)
        self.row = QHBoxLayout()
        self.row.setSpacing(2)
        self.buttons: list[QToolButton] = []
        self.layer = None
        self.map = QComboBox()
        self.map.addItems(list(MAPS))
        self.map.setToolTip(
            (
                "where the words match: the text heatmap (a reader's check);\nwhat the similarity used: gradient "
                "x input of the slide-sentence similarity (faithful: deleting its top patches lowers the similarity "
                "most);\nwhat the claim measured: each patch's probability of the class an extent or tissue "
                "claim was measured on (the words' map when the sentence has no such claim)"
            )
        )
        self.map.currentIndexChanged.connect(lambda _=0: self._reshow())
        self._shown = None  # (statement, slide layer) on display
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.map)
        layout.addLayout(self.row)

    def _reshow(self) -> None:
        if self._shown is not None and self._shown[1] in self.viewer.layers:
            self.show(*self._shown)

    def _map(self, statement):
        """The picked map of a statement (the words' map when it has not that one), its top patches,
        and what it shows."""
        ev = statement.evidence
        field = MAPS[self.map.currentText()]
        picked = getattr(ev, field, None)
        if picked is None or picked is ev.heatmap:
            missing = (
                ""
                if field == "heatmap"
                else ("no measured claim in this sentence, so: " if field == "measurement" else "no attribution, so: ")
            )
            return ev.heatmap, ev.top_xy_level0, missing + "where the slide matches the words"
        top = picked.top_patches(len(ev.top_xy_level0))
        what = (
            "what the slide-sentence similarity used (gradient x input)" if picked is ev.attribution else picked.label
        )
        return picked, picked.xy_level0[top], what

    def show(self, statement, slide_layer) -> None:
        """Heatmap layer of ``statement`` over ``slide_layer`` and its top patches as buttons."""
        self._shown = (statement, slide_layer)
        picked, top_xy, what = self._map(statement)
        heatmap = picked.normalised("rank")
        data, kwargs, _ = heatmap_layer_data(heatmap, slide_layer, colormap="viridis", opacity=0.5)
        kwargs["name"] = f"{slide_layer.name}: {EVIDENCE_LAYER}"
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = self.viewer.add_image(data, **kwargs)
        self.viewer.layers.selection.active = slide_layer
        flag = " (low support: check it)" if statement.flagged else ""
        basis = html.escape(statement.basis).replace("\n", "<br>")
        self.label.setText(
            (
                f"<b>support {statement.support:.0%}</b>{flag}: "
                f"{html.escape(statement.text)}<br><small>{basis}<br>evidence: "
                f"{what}, ranked over the slide's patches; top patches:</small>"
            )
        )
        for b in self.buttons:
            b.deleteLater()
        self.buttons = []
        slide = slide_layer.metadata["slide"]
        size = picked.size_level0
        for xy in top_xy:
            b = QToolButton()
            pix = pixmap_of(patch_rgb(slide, xy, size))
            b.setIcon(QIcon(pix))
            b.setIconSize(QSize(pix.width(), pix.height()))
            b.setToolTip(f"patch at level-0 ({xy[0]}, {xy[1]}): click to centre the view on it")
            b.clicked.connect(lambda _=False, xy=xy, layer=slide_layer, s=size: self.centre_on(layer, xy, s))
            self.row.addWidget(b, 0, Qt.AlignLeft)
            self.buttons.append(b)

    def centre_on(self, slide_layer, xy_level0, size_level0: int) -> None:
        centre = (xy_level0[1] + size_level0 / 2 - 0.5, xy_level0[0] + size_level0 / 2 - 0.5)  # level-0 (row, col)
        self.viewer.camera.center = tuple(slide_layer.data_to_world(centre))[-2:]
        self.viewer.camera.zoom = max(self.viewer.camera.zoom, 2.0 / (size_level0 * slide_layer.scale[-1]) * 100)
