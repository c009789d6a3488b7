"""The mouse wheel scrolls the dialog; it changes a box only when the user clicked into it first.

Qt hands a wheel turn to whatever box is under the pointer, so scrolling a long dialog used to
change Product level or Scaling unnoticed on the way down.
"""

from __future__ import annotations

from qgis.PyQt.QtCore import QEvent, QObject, Qt
from qgis.PyQt.QtWidgets import QAbstractSpinBox, QComboBox, QWidget


class _WheelGuard(QObject):
    """Event filter: a wheel turn over a box without focus goes to the scroll area, not the box."""

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt API)
        """Keep the wheel from a box without focus; ignored, the event goes on to the box's parents (the scroll
        area), as Qt passes on an ignored wheel event even when a filter took it."""
        if event.type() == QEvent.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()
            return True
        return False


def ignore_wheel_unless_focused(root: QWidget) -> None:
    """Guard every combo box and spin box under ``root`` (call once its widgets are built)."""
    guard = _WheelGuard(root)
    root._wheel_guard = guard  # kept alive with the dialog
    for box in root.findChildren(QComboBox) + root.findChildren(QAbstractSpinBox):
        box.setFocusPolicy(Qt.StrongFocus)  # focus by click or Tab, never by the wheel
        box.installEventFilter(guard)
