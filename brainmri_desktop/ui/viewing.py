"""Window/level: presets (the file's own, full range, brain, and the reader's, kept in QSettings), numeric entry, reset
and the right-drag of the image views; and the pixel readout for the status bar."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QInputDialog, QLabel, QPushButton,
                               QWidget)

from ..core.geometry import readout
from ..core.io.slices import Slice
from ..core.intensity import robust_range
from ..core.preprocess import find_head, has_head
from .image_view import ImageView, ViewState

HEADER, FULL, BRAIN = "Header", "Full range", "Brain"
CT_BRAIN = (40.0, 80.0)  # centre, width in HU: the brain window of every CT reading room
_SETTINGS_KEY = "viewing/window_presets"
_MIN_WIDTH = 1e-6


_SPIN_KEYS = {Qt.Key_Up, Qt.Key_Down, Qt.Key_PageUp, Qt.Key_PageDown}


class _SpinKeys(QObject):
    def eventFilter(self, watched, event):
        if event.type() == QEvent.ShortcutOverride and event.key() in _SPIN_KEYS:
            event.accept()  # the number box steps its value instead of the window moving to another slice
            return True
        return False


def keep_arrow_keys(spin) -> None:
    """Arrow and Page keys in a focused number box change its number; elsewhere they move through the slices."""
    spin.installEventFilter(_SpinKeys(spin))


def _span(lo: float, hi: float) -> tuple[float, float]:
    return (lo + hi) / 2, max(hi - lo, _MIN_WIDTH)


def brain_window(slice_: Slice) -> tuple[float, float]:
    """CT: W80/L40 HU. MR and the rest have no absolute scale: the robust range of the values inside the head, found
    as preprocessing finds it."""
    if slice_.series is not None and slice_.series.modality == "CT":
        return CT_BRAIN
    values = slice_.values()
    mask = find_head(values)
    return _span(*robust_range(values[mask] if has_head(float(mask.mean())) else values))


def builtin_presets(slice_: Slice) -> dict[str, tuple[float, float]]:
    values = slice_.values()
    presets = {HEADER: slice_.window} if slice_.window else {}
    presets[FULL] = _span(float(values.min()), float(values.max()))
    presets[BRAIN] = brain_window(slice_)
    return presets


class WindowLevelBar(QWidget):
    """Holds the window (centre, width) shown for the current series; emits it whenever it changes."""

    windowChanged = Signal(float, float)

    def __init__(self, settings: QSettings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self._slice: Slice | None = None
        self._window: tuple[float, float] | None = None
        self.presets = QComboBox()
        self.presets.setToolTip("Window/level presets: the file's own, the full value range, brain, and yours")
        self.presets.textActivated.connect(self.apply_preset)
        self.centre_spin = self._spin("Window centre (level)")
        self.width_spin = self._spin("Window width")
        self.width_spin.setMinimum(0.01)
        for spin in (self.centre_spin, self.width_spin):
            spin.valueChanged.connect(lambda _v: self.set_window(self.centre_spin.value(), self.width_spin.value()))
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the file's window (or the automatic one when it has none)")
        self.reset_button.clicked.connect(self.reset)
        self.save_button = QPushButton("Save preset...")
        self.save_button.clicked.connect(self._ask_preset_name)
        self.delete_button = QPushButton("Delete preset")
        self.delete_button.clicked.connect(lambda: self.delete_preset(self.presets.currentText()))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (QLabel("W/L"), self.presets, QLabel("C"), self.centre_spin, QLabel("W"), self.width_spin,
                  self.reset_button, self.save_button, self.delete_button):
            layout.addWidget(w)
        self._fill_presets()

    def _spin(self, tip: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(-1e7, 1e7)
        spin.setDecimals(2)
        spin.setKeyboardTracking(False)  # apply a typed number when it is complete, not at every digit
        spin.setToolTip(tip)
        keep_arrow_keys(spin)
        return spin

    # -------------------------------------------------------------- presets
    def user_presets(self) -> dict[str, tuple[float, float]]:
        raw = self.settings.value(_SETTINGS_KEY, "") or ""
        try:
            stored = json.loads(raw) if raw else {}
            return {str(k): (float(v[0]), float(v[1])) for k, v in stored.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            return {}  # a damaged settings value loses the presets, not the window

    def preset_windows(self) -> dict[str, tuple[float, float]]:
        presets = builtin_presets(self._slice) if self._slice is not None else {}
        return {**presets, **{k: v for k, v in self.user_presets().items() if k not in presets}}

    def preset_names(self) -> list[str]:
        """The names `preset_windows` gives, without computing the windows: the brain window reads the whole slice,
        too slow to repeat at every slice the reader scrolls to; it is computed when chosen."""
        s = self._slice
        builtin = ([HEADER] if s is not None and s.window else []) + ([FULL, BRAIN] if s is not None else [])
        return builtin + [k for k in self.user_presets() if k not in builtin]

    def _fill_presets(self) -> None:
        self.delete_button.setEnabled(bool(self.user_presets()))
        names = self.preset_names()
        if names == [self.presets.itemText(i) for i in range(self.presets.count())]:
            return
        self.presets.blockSignals(True)
        self.presets.clear()
        self.presets.addItems(names)
        self.presets.setCurrentIndex(-1)
        self.presets.blockSignals(False)

    def apply_preset(self, name: str) -> None:
        window = self.preset_windows().get(name)
        if window is not None:
            self.set_window(*window)

    def save_preset(self, name: str) -> None:
        if self._window is None or not name.strip():
            return
        stored = self.user_presets()
        stored[name.strip()] = self._window
        self.settings.setValue(_SETTINGS_KEY, json.dumps(stored))
        self._fill_presets()

    def delete_preset(self, name: str) -> None:
        stored = self.user_presets()
        if stored.pop(name, None) is not None:
            self.settings.setValue(_SETTINGS_KEY, json.dumps(stored))
            self._fill_presets()

    def _ask_preset_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Save window preset", "Name of the preset:")
        if ok:
            self.save_preset(name)

    # --------------------------------------------------------------- window
    @property
    def window(self) -> tuple[float, float] | None:
        return self._window

    def set_slice(self, slice_: Slice | None, reset: bool = False) -> None:
        """The slice the presets are computed from. The window stays across slices of a series; `reset` (or the
        first slice) starts from the slice's own window."""
        self._slice = slice_
        self._fill_presets()
        if slice_ is not None and (reset or self._window is None):
            self.reset()

    def reset(self) -> None:
        if self._slice is not None:
            self.set_window(*self._slice.display_window())

    def set_window(self, centre: float, width: float) -> None:
        window = (float(centre), max(float(width), _MIN_WIDTH))
        if window == self._window:
            return
        self._window = window
        for spin, value in ((self.centre_spin, window[0]), (self.width_spin, window[1])):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        self.windowChanged.emit(*window)

    def drag(self, d_centre: float, d_width: float) -> None:
        """Slot for ImageView.windowDrag: the changes come as fractions of the slice's value range."""
        if self._slice is None or self._window is None:
            return
        values = self._slice.values()
        span = float(values.max() - values.min()) or 1.0
        c, w = self._window
        self.set_window(c + d_centre * span, max(span * 1e-3, w + d_width * span))


class PixelReadout(QLabel):
    """The status-bar text for the pixel under the cursor (see core.geometry.readout)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._slice: Slice | None = None

    def set_slice(self, slice_: Slice | None) -> None:
        """None while the views show something other than the slice's own pixels (the model input, say)."""
        self._slice = slice_
        self.clear()

    def show_pixel(self, x: int, y: int) -> None:
        s = self._slice
        if s is None or not (0 <= y < s.shape[0] and 0 <= x < s.shape[1]):
            self.clear()
            return
        self.setText(readout(s, x, y))


@dataclass(frozen=True)
class SeriesView:
    """What the reader had set on a series: the slice they were on, the views' zoom, pan and orientation, the window."""

    index: int
    views: tuple[ViewState, ...]
    window: tuple[float, float] | None


class SeriesMemory:
    """Each series' view, kept while the reader looks at another, given back when they return."""

    def __init__(self):
        self._kept: dict[str, SeriesView] = {}

    def save(self, uid: str, index: int, views: Sequence[ImageView], bar: WindowLevelBar) -> None:
        self._kept[uid] = SeriesView(index, tuple(v.view_state() for v in views), bar.window)

    def index_of(self, uid: str) -> int | None:
        """The slice the reader was on in that series; None for a series not seen yet."""
        kept = self._kept.get(uid)
        return kept.index if kept else None

    def restore(self, uid: str, views: Sequence[ImageView], bar: WindowLevelBar) -> bool:
        """Gives back zoom, pan, orientation and window. Call once the series' slice is shown and the bar has its
        slice (showing a new image fits it, and a new series resets the window)."""
        kept = self._kept.get(uid)
        if kept is None:
            return False
        for view, state in zip(views, kept.views):
            view.restore_state(state)
        if kept.window is not None:
            bar.set_window(*kept.window)
        return True

    def forget(self) -> None:
        self._kept.clear()
