"""A dock's status line: plain for progress, red plus a napari notification for errors."""

from __future__ import annotations

from napari.utils.notifications import show_error


def show_status(label, text: str, error: bool = False, source: str = "PathAlign") -> None:
    label.setText(text)
    label.setStyleSheet("color: #ff6b6b;" if error else "")
    if error:
        show_error(f"{source}: {text}")
