"""The three panels of the PathAlign dock: attention explorer, text -> region, zero-shot.

Each panel only gathers input and emits what to show; the dock owns the analysis and the layers.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QIcon, QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_pathalign._napari.slide_geometry import SCOPES

QUICK_PHRASES = ["metastatic carcinoma", "lymphoid tissue", "adipose tissue", "desmoplastic stroma"]


def pixmap_of(rgb) -> QPixmap:
    h, w, _ = rgb.shape
    return QPixmap.fromImage(QImage(rgb.tobytes(), w, h, 3 * w, QImage.Format_RGB888).copy())


class AttentionPanel(QWidget):
    """Layer / head / query pickers with 'all', mean or max, a text-weighted mode and a query gallery."""

    show_requested = Signal(dict)  # attention_heatmap kwargs

    def __init__(self):
        super().__init__()
        self.layer, self.head, self.query = QComboBox(), QComboBox(), QComboBox()
        self.reduce = QComboBox()
        self.reduce.addItems(["mean", "max"])
        self.mode = QComboBox()
        self.mode.addItems(["plain attention", "queries weighted by a text"])
        self.weight_text = QLineEdit("metastatic carcinoma")
        self.show_button = QPushButton("Show attention")
        form = QFormLayout()
        for label, w in (
            ("mode", self.mode),
            ("layer", self.layer),
            ("head", self.head),
            ("query", self.query),
            ("combine", self.reduce),
            ("text", self.weight_text),
        ):
            form.addRow(label, w)
        self.note = QLabel(
            (
                "The mean of all queries mixes queries that encode different things; the text-weighted map "
                "weights each query by how much it matches the text."
            )
        )
        self.note.setWordWrap(True)
        self.gallery = QGridLayout()
        self.gallery.setSpacing(2)
        self.tiles: list[QToolButton] = []
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.show_button)
        layout.addWidget(self.note)
        layout.addWidget(QLabel("Queries (mean over layers and heads); click one to show it:"))
        layout.addLayout(self.gallery)
        layout.addStretch()
        self.show_button.clicked.connect(self._emit)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self._mode_changed()

    def set_shape(self, layers: int, heads: int, queries: int) -> None:
        for combo, n in ((self.layer, layers), (self.head, heads), (self.query, queries)):
            combo.clear()
            combo.addItem("all")
            combo.addItems([str(i) for i in range(n)])

    def set_gallery(self, thumbnails) -> None:
        for t in self.tiles:
            t.deleteLater()
        self.tiles = []
        for q, rgb in enumerate(thumbnails):
            b = QToolButton()
            pix = pixmap_of(rgb)
            b.setIcon(QIcon(pix))
            b.setIconSize(pix.size())
            b.setToolTip(f"query {q}")
            b.setText(str(q))
            b.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
            b.clicked.connect(lambda _=False, q=q: self.show_query(q))
            self.gallery.addWidget(b, q // 6, q % 6)
            self.tiles.append(b)

    def show_query(self, q: int) -> None:
        self.mode.setCurrentIndex(0)
        self.query.setCurrentIndex(q + 1)
        self._emit()

    def _mode_changed(self, *_):
        weighted = self.mode.currentIndex() == 1
        self.weight_text.setEnabled(weighted)
        self.query.setEnabled(not weighted)

    @staticmethod
    def _pick(combo) -> int | None:
        return None if combo.currentIndex() <= 0 else combo.currentIndex() - 1

    def request(self) -> dict:
        weighted = self.mode.currentIndex() == 1
        return {
            "layer": self._pick(self.layer),
            "head": self._pick(self.head),
            "query": None if weighted else self._pick(self.query),
            "reduce": self.reduce.currentText(),
            "text": self.weight_text.text() if weighted else None,
        }

    def _emit(self, *_):
        self.show_requested.emit(self.request())


class TextPanel(QWidget):
    """Type a phrase, get where on the slide it matches."""

    show_requested = Signal(str)

    def __init__(self):
        super().__init__()
        self.text = QLineEdit("metastatic carcinoma")
        self.text.setPlaceholderText("a phrase, e.g. metastatic carcinoma")
        self.show_button = QPushButton("Show where it matches")
        quick = QHBoxLayout()
        for phrase in QUICK_PHRASES:
            b = QPushButton(phrase)
            b.setFlat(True)
            b.clicked.connect(lambda _=False, p=phrase: (self.text.setText(p), self._emit()))
            quick.addWidget(b)
        note = QLabel(
            (
                "Per patch: similarity of its neighbourhood (3 x 3 patches, generation model's Q-Former) to "
                "the phrase, minus its mean similarity to other tissue phrases."
            )
        )
        note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(self.show_button)
        layout.addLayout(quick)
        layout.addWidget(note)
        layout.addStretch()
        self.show_button.clicked.connect(self._emit)
        self.text.returnPressed.connect(self._emit)

    def _emit(self, *_):
        self.show_requested.emit(self.text.text())


class ZeroShotPanel(QWidget):
    """Editable classes and prompts, a probability bar per class; click a class for its map."""

    run_requested = Signal(dict)  # {class: [prompts]}
    class_clicked = Signal(str)

    def __init__(self, sets: dict, default: str):
        super().__init__()
        self.sets = sets
        self.set_box = QComboBox()
        self.set_box.addItems(list(sets))
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["class", "prompts (separated by ;)"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        self.add_row = QPushButton("+ class")
        self.run_button = QPushButton("Classify")
        self.where = QComboBox()  # the whole slide, the view, or the selected shape (drawn or imported)
        self.where.addItems(SCOPES)
        self.where.setToolTip("Classify the whole slide, the current view, or the selected shape's patches")
        self.bars = QVBoxLayout()
        self.bar_widgets: dict[str, QPushButton] = {}
        self.scope = None  # the slide's InScope: an out-of-scope slide's bars are labelled so
        row = QHBoxLayout()
        row.addWidget(self.add_row)
        row.addWidget(self.run_button)
        row.addWidget(self.where, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.set_box)
        layout.addWidget(self.table)
        layout.addLayout(row)
        layout.addLayout(self.bars)
        layout.addStretch()
        self.set_box.currentTextChanged.connect(self.load_set)
        self.add_row.clicked.connect(lambda: self.table.insertRow(self.table.rowCount()))
        self.run_button.clicked.connect(lambda: self.run_requested.emit(self.classes()))
        self.set_box.setCurrentText(default)
        self.load_set(default)

    def set_sets(self, sets: dict, default: str) -> None:
        """Offer other class sets (an analysis's report ontology), keeping the chosen set when it is there."""
        current = self.set_box.currentText()
        self.sets = sets
        self.set_box.blockSignals(True)
        self.set_box.clear()
        self.set_box.addItems(list(sets))
        self.set_box.blockSignals(False)
        name = current if current in sets else default
        self.set_box.setCurrentText(name)
        self.load_set(name)

    def load_set(self, name: str) -> None:
        classes = self.sets.get(name, {})
        self.table.setRowCount(0)
        for c, prompts in classes.items():
            r = self.table.rowCount()
            self.table.insertRow(r)
            self.table.setItem(r, 0, QTableWidgetItem(c))
            self.table.setItem(r, 1, QTableWidgetItem("; ".join(prompts)))

    def classes(self) -> dict[str, list[str]]:
        out = {}
        for r in range(self.table.rowCount()):
            name, prompts = self.table.item(r, 0), self.table.item(r, 1)
            if name is None or not name.text().strip():
                continue
            out[name.text().strip()] = [p.strip() for p in (prompts.text() if prompts else "").split(";") if p.strip()]
        return out

    def show_result(self, result, where: str = "") -> None:
        """The probabilities as bars; ``where`` names a region classified instead of the whole slide."""
        while self.bars.count():
            item = self.bars.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.bar_widgets = {}
        for c, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1]):
            row = QWidget()
            h = QHBoxLayout(row)
            h.setContentsMargins(0, 0, 0, 0)
            name = QPushButton(c)
            name.setToolTip(f"show where the slide looks like '{c}'")
            name.clicked.connect(lambda _=False, c=c: self.class_clicked.emit(c))
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(round(p * 1000))
            bar.setFormat(f"{p:.1%}")
            h.addWidget(name, 2)
            h.addWidget(bar, 3)
            self.bars.addWidget(row)
            self.bar_widgets[c] = name
        of = f"{where}: " if where else ""
        self.bars.addWidget(QLabel(f"{of}softmax at the {result.model} model's temperature ({result.temperature:.1f})"))
        if self.scope is not None and self.scope.flagged:
            warn = QLabel("OUT OF SCOPE slide: these classes are only the nearest the model knows, not a diagnosis.")
            warn.setWordWrap(True)
            warn.setStyleSheet("color: #ff8080; font-weight: bold;")
            self.bars.addWidget(warn)
