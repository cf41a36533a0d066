"""The status bar: a line of status, the progress of loading or triage with its Cancel button, the compute device."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from ..core import runtime


class StatusArea:
    def __init__(self, bar: QStatusBar):
        self.status = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.device = QLabel(runtime.device_description())
        bar.addWidget(self.status, 1)
        for w in (self.progress, self.cancel_button, self.device):
            bar.addPermanentWidget(w)

    def start(self, text: str) -> None:
        self.status.setText(text)
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()

    def set_progress(self, done: int, total: int) -> None:
        # QProgressBar.setValue repaints at once; while the engine's thread holds the GIL that repaint waited up to
        # 50 ms for it, once per chunk. With updates off it only records the value, and turning them on again asks
        # for an ordinary paint, which the event loop coalesces with the rest.
        self.progress.setUpdatesEnabled(False)
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)
        self.progress.setUpdatesEnabled(True)

    def stop(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()
