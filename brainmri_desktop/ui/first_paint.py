"""Work that waits for a window's first paint: begun with it, on another thread, it would make that paint wait for
the GIL (the window's first paint took 85 ms beside a study's loading thread instead of about 20)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget


class AfterFirstPaint(QObject):
    """Calls `then` from the event loop once `window` has painted, or after `at_most_ms` should it not paint (a
    minimised window). A zero-time timer is not enough: it fires before the first paint."""

    def __init__(self, window: QWidget, then, at_most_ms: int = 500):
        super().__init__(window)
        self._then = then
        # On the window alone: a filter on the application ran Python for each of the ~600 events of the first
        # paint, which took 35-49 ms of the UI thread with it and 19-24 ms without (docs/EXPERIMENTS.md). The
        # window's own paint event opens the paint pass.
        window.installEventFilter(self)
        QTimer.singleShot(at_most_ms, self, self._fire)

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Paint:
            QTimer.singleShot(0, self, self._fire)  # after the paint pass this event belongs to
        return False

    def _fire(self) -> None:
        if self._then is not None:
            then, self._then = self._then, None
            self.parent().removeEventFilter(self)
            then()
