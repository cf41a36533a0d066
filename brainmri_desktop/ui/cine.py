"""Cine: play the series slice after slice at a chosen speed, from the current slice, wrapping at the end."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSpinBox, QToolButton, QWidget

from .viewing import keep_arrow_keys

MIN_FPS, MAX_FPS = 1, 30


class CineController(QObject):
    frame = Signal(int)  # the slice to show next
    runningChanged = Signal(bool)

    def __init__(self, parent=None, fps: int = 8):
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._index, self._count = 0, 0
        self._fps = MIN_FPS
        self.set_fps(fps)

    @property
    def fps(self) -> int:
        return self._fps

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    @property
    def index(self) -> int:
        return self._index

    def set_fps(self, fps: int) -> None:
        self._fps = max(MIN_FPS, min(MAX_FPS, int(fps)))
        self._timer.setInterval(round(1000 / self._fps))

    def set_position(self, index: int, count: int) -> None:
        """Where the reader is: cine goes on from there. A series of one slice or none has nothing to play."""
        self._index, self._count = index, count
        if count < 2:
            self.stop()

    def start(self) -> None:
        if self._count >= 2 and not self.running:
            self._timer.start()
            self.runningChanged.emit(True)

    def stop(self) -> None:
        if self.running:
            self._timer.stop()
            self.runningChanged.emit(False)

    def toggle(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def _tick(self) -> None:
        self._index = (self._index + 1) % self._count
        self.frame.emit(self._index)


class CineBar(QWidget):
    """A play/stop button and the speed in frames per second, both bound to a CineController."""

    def __init__(self, controller: CineController, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.play = QToolButton()
        self.play.setText("Cine")
        self.play.setCheckable(True)
        self.play.setToolTip("Play the series slice after slice (Space)")
        self.play.toggled.connect(self._play)
        controller.runningChanged.connect(self._show_running)
        self.speed = QSpinBox()
        self.speed.setRange(MIN_FPS, MAX_FPS)
        self.speed.setSuffix(" frames/s")
        self.speed.setValue(controller.fps)
        self.speed.setToolTip("Cine speed")
        self.speed.valueChanged.connect(controller.set_fps)
        keep_arrow_keys(self.speed)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.play, QLabel("speed"), self.speed):
            layout.addWidget(w)

    def _play(self, on: bool) -> None:
        if on:
            self.controller.start()
        else:
            self.controller.stop()
        self._show_running(self.controller.running)  # a series too short to play leaves the button up

    def _show_running(self, running: bool) -> None:
        self.play.blockSignals(True)
        self.play.setChecked(running)
        self.play.blockSignals(False)
