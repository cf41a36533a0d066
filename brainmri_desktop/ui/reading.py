"""The reading tools of a window in one object, wired to its image views: slice scrolling by wheel and keys, cine,
window/level, the pixel readout, the viewer's actions and each series' remembered view. The window says which
slice it shows (`slice_shown`) and shows the slice asked for (`sliceRequested`)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QMainWindow, QToolBar, QWidget

from ..core.geometry import PixelGeometry
from ..core.io.slices import Slice
from .cine import CineBar, CineController
from .image_view import ImageView
from .shortcuts import ViewingActions
from .viewing import PixelReadout, SeriesMemory, WindowLevelBar


class ReadingTools(QObject):
    sliceRequested = Signal(int)  # the slice index (in series order) the window should show next

    def __init__(self, host: QWidget, views: Sequence[ImageView], settings: QSettings):
        super().__init__(host)
        self.views = list(views)
        self.window_bar = WindowLevelBar(settings)
        self.cine = CineController(self)
        self.cine_bar = CineBar(self.cine)
        self.readout = PixelReadout()
        self.actions = ViewingActions(host, self.views, self.window_bar, self.cine)
        self.memory = SeriesMemory()
        self._index, self._count = -1, 0
        for view in self.views:
            view.step.connect(self.step)
            view.windowDrag.connect(self.window_bar.drag)
            view.cursorMoved.connect(self.readout.show_pixel)
        self.actions.step.connect(self.step)
        self.actions.goTo.connect(self.go_to)
        self.cine.frame.connect(self.sliceRequested)

    def install(self, window: QMainWindow) -> None:
        """Puts the window/level and cine controls in a tool bar of their own, on a new row, and the readout in the
        status bar (the actions are already the window's)."""
        bar = QToolBar("Viewing", window)
        bar.setObjectName("viewingBar")
        bar.addWidget(self.window_bar)
        bar.addWidget(self.cine_bar)
        window.addToolBarBreak()
        window.addToolBar(bar)
        window.statusBar().addWidget(self.readout)

    @property
    def window(self) -> tuple[float, float] | None:
        """The window to draw the slice with (Slice.display_image's argument)."""
        return self.window_bar.window

    def step(self, n: int) -> None:
        """Move by n slices, stopping at the first and the last (cine is what wraps)."""
        if self._count:
            target = max(0, min(self._count - 1, self._index + n))
            if target != self._index:
                self.sliceRequested.emit(target)

    def go_to(self, index: int) -> None:
        if self._count:
            self.sliceRequested.emit(index % self._count)

    def slice_shown(self, index: int, count: int, slice_: Slice, own_pixels: bool = True) -> None:
        """Call whenever the window shows slice `index` of `count`. `own_pixels` is False while the views show
        something else on another grid (the model input): no readout and no ruler in mm there."""
        self._index, self._count = index, count
        self.cine.set_position(index, count)
        self.window_bar.set_slice(slice_)
        self.readout.set_slice(slice_ if own_pixels else None)
        geometry = PixelGeometry.of(slice_) if own_pixels else None
        for view in self.views:
            view.set_geometry(geometry, key=(index, own_pixels))

    def leave_series(self, uid: str) -> None:
        """Before showing another series: keep this one's slice, view and window."""
        if self._count:
            self.memory.save(uid, self._index, self.views, self.window_bar)
        self.cine.stop()

    def enter_series(self, uid: str, first: Slice) -> int:
        """A series about to be shown: starts from its own window; gives the slice index to show (where the reader
        left it, else 0). Call `restore_series` once that slice is shown."""
        self._index, self._count = -1, 0
        self.window_bar.set_slice(first, reset=True)
        return self.memory.index_of(uid) or 0

    def restore_series(self, uid: str) -> None:
        """A series seen before gets its view back; a new one starts upright, not inverted, fitted."""
        if not self.memory.restore(uid, self.views, self.window_bar):
            self.actions.reset_image()
