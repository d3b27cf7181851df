"""The in-scope banner every dock shows above its results: is this slide tissue the model knows?"""

from __future__ import annotations

from qtpy.QtWidgets import QLabel


class ScopeBanner(QLabel):
    """Red on an out-of-scope slide, a quiet line in scope, hidden when the model ships no in-scope model."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.scope = None
        self.setVisible(False)

    def show_scope(self, scope) -> None:
        """Show ``scope`` (an ``InScope``, or None: hide)."""
        self.scope = scope
        if scope is None:
            self.clear()
            self.setVisible(False)
            return
        self.setText(scope.banner)
        self.setToolTip(f"{scope.explanation}\n\nBasis: {scope.basis}")
        if scope.flagged:
            self.setStyleSheet("QLabel { background: #8b1a1a; color: white; font-weight: bold; padding: 6px; }")
        else:
            self.setStyleSheet("QLabel { color: #8fbf8f; padding: 2px; }")
        self.setVisible(True)
