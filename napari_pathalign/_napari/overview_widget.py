"""The slide's thumbnail with the current view drawn on it; a click or drag moves the camera there."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from qtpy.QtWidgets import QWidget

OVERVIEW_SIDE = 256  # screen pixels of the thumbnail's longer side


class OverviewWidget(QWidget):
    """A thumbnail (H, W, 3) uint8 and a view rectangle in thumbnail-fraction coordinates (0..1)."""

    clicked = Signal(float, float)  # (y, x) as fractions of the slide's height and width

    def __init__(self):
        super().__init__()
        self.pixmap: QPixmap | None = None
        self.view = None  # (top, left, bottom, right) fractions of the slide, or None
        self.setMinimumSize(64, 64)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_thumbnail(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self.pixmap = None
        else:
            rgb = np.ascontiguousarray(rgb[..., :3])
            h, w = rgb.shape[:2]
            image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
            self.pixmap = QPixmap.fromImage(image.copy())
            self.setFixedSize(w, h)
        self.update()

    def set_view(self, view) -> None:
        self.view = view
        self.update()

    def paintEvent(self, event):  # noqa: N802 (Qt)
        painter = QPainter(self)
        if self.pixmap is None:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no slide")
            return
        painter.drawPixmap(0, 0, self.pixmap)
        if self.view is not None:
            top, left, bottom, right = self.view
            w, h = self.pixmap.width(), self.pixmap.height()
            pen = QPen(QColor(0, 200, 255), 2)
            painter.setPen(pen)
            rect = QRectF(QPointF(left * w, top * h), QPointF(right * w, bottom * h))
            painter.drawRect(rect.intersected(QRectF(1, 1, w - 2, h - 2)))
        painter.end()

    def _emit(self, event) -> None:
        if self.pixmap is None:
            return
        pos = event.position() if hasattr(event, "position") else event.pos()
        self.clicked.emit(
            float(np.clip(pos.y() / self.pixmap.height(), 0, 1)), float(np.clip(pos.x() / self.pixmap.width(), 0, 1))
        )

    def mousePressEvent(self, event):  # noqa: N802 (Qt)
        self._emit(event)

    def mouseMoveEvent(self, event):  # noqa: N802 (Qt)
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._emit(event)
