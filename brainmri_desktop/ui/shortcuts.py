"""The viewer's keyboard actions (slices, invert, flip, rotate, ruler, cine, window reset), and the Help list of every
shortcut, read from the window's actual QActions when it opens so that it cannot go stale."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from .cine import CineController
from .image_view import MOUSE_GESTURES, ImageView, Orientation
from .viewing import WindowLevelBar

PAGE = 10  # slices moved by Page Up / Page Down


class ViewingActions(QObject):
    """QActions added to `host` (the main window), so that their keys work whatever has the focus. Orientation,
    inversion, rulers and zoom apply to every view in `views` at once, which keeps linked views alike."""

    step = Signal(int)  # move by this many slices
    goTo = Signal(int)  # 0: the first slice, -1: the last

    def __init__(self, host: QWidget, views: Sequence[ImageView], window_bar: WindowLevelBar | None = None,
                 cine: CineController | None = None):
        super().__init__(host)
        self.host, self.views = host, list(views)
        self.actions: list[QAction] = []
        self._add("Next slice", lambda: self.step.emit(1), "Down")
        self._add("Previous slice", lambda: self.step.emit(-1), "Up")
        self._add(f"Forward {PAGE} slices", lambda: self.step.emit(PAGE), "PgDown")
        self._add(f"Back {PAGE} slices", lambda: self.step.emit(-PAGE), "PgUp")
        self._add("First slice", lambda: self.goTo.emit(0), "Home")
        self._add("Last slice", lambda: self.goTo.emit(-1), "End")
        self._add("Zoom in", lambda: self._each(lambda v: v.zoom_by(1.25)), "Ctrl+=")
        self._add("Zoom out", lambda: self._each(lambda v: v.zoom_by(0.8)), "Ctrl+-")
        self.invert = self._add("Invert grey levels", self._toggle_invert, "I")
        self._add("Flip left-right", lambda: self._orient(Orientation.flipped_horizontally), "H")
        self._add("Flip up-down", lambda: self._orient(Orientation.flipped_vertically), "V")
        self._add("Rotate 90° clockwise", lambda: self._orient(lambda o: o.rotated(1)), "R")
        self._add("Rotate 90° anticlockwise", lambda: self._orient(lambda o: o.rotated(-1)), "Shift+R")
        self.ruler = self._add("Ruler (measure a distance)", self._toggle_ruler, "M")
        self.ruler.setCheckable(True)
        self._add("Clear measurements", lambda: self._each(ImageView.clear_measurements), "Shift+M")
        self._add("Reset image (orientation, inversion, zoom)", self.reset_image, "Ctrl+0")
        if window_bar is not None:
            self._add("Reset window/level", window_bar.reset, "W")
        if cine is not None:
            self._add("Play / stop cine", cine.toggle, "Space")

    def _add(self, text: str, slot, keys: str) -> QAction:
        action = QAction(text, self.host)
        action.setShortcut(QKeySequence(keys))
        action.triggered.connect(slot)
        self.host.addAction(action)
        self.actions.append(action)
        return action

    def _each(self, change) -> None:
        for view in self.views:
            change(view)

    def _orient(self, change) -> None:
        self._each(lambda v: v.set_orientation(change(v.orientation)))

    def _toggle_invert(self) -> None:
        self._each(lambda v: v.set_inverted(not v.inverted))

    def _toggle_ruler(self) -> None:
        self._each(lambda v: v.set_ruler_tool(self.ruler.isChecked()))

    def reset_image(self) -> None:
        for view in self.views:
            view.set_inverted(False)
            view.set_orientation(Orientation())
            view.fit()


def _plain(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def shortcut_rows(window: QWidget) -> list[tuple[str, str]]:
    """(keys, what they do) for every QAction with a shortcut under `window`, then the mouse gestures."""
    rows, seen = [], set()
    for action in window.findChildren(QAction):
        for keys in action.shortcuts():
            row = (keys.toString(QKeySequence.NativeText), _plain(action.text()))
            if row not in seen:
                seen.add(row)
                rows.append(row)
    return rows + list(MOUSE_GESTURES)


class ShortcutsDialog(QDialog):
    def __init__(self, window: QWidget, parent=None):
        super().__init__(parent or window)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        rows = shortcut_rows(window)
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys / mouse", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        for r, (keys, text) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(520, 560)


def help_action(window: QWidget) -> QAction:
    """A 'Keyboard and mouse shortcuts' action (F1) for the Help menu; the list is built when it opens."""
    action = QAction("Keyboard and mouse shortcuts", window)
    action.setShortcut(QKeySequence(Qt.Key_F1))
    action.triggered.connect(lambda: ShortcutsDialog(window).exec())
    window.addAction(action)
    return action
