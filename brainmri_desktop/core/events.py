"""Change events of the core's models, as plain callbacks: a `Session` or a `Study` says what changed and whoever
shows it (the window, a test, nothing at all on the command line) connects a function. No Qt here, so the core stays
usable without a display; the window's handlers run on the UI thread because the models are only changed there."""

from __future__ import annotations

from collections.abc import Callable


class Event:
    """Callbacks called in the order connected, each with the event's arguments."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)
