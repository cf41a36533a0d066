"""The File menu's recent studies and the folder the file dialogs start in, kept in the user's settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

KEPT = 8


class RecentStudies:
    def __init__(self, settings: QSettings, menu: QMenu, open_path: Callable[[Path], None]):
        self.settings, self.menu, self.open_path = settings, menu, open_path
        self._update()

    def _paths(self) -> list[str]:
        # QSettings gives a one-item list back as a bare string on some formats (INI, the registry): a string is one
        # path, not a list of its characters.
        value = self.settings.value("recent", []) or []
        return [value] if isinstance(value, str) else list(value)

    def _update(self) -> None:
        self.menu.clear()
        for path in self._paths()[:KEPT]:
            self.menu.addAction(path).triggered.connect(lambda _=False, p=path: self.open_path(Path(p)))

    def remember(self, paths: list[Path]) -> None:
        first = str(paths[0])
        recent = [first] + [r for r in self._paths() if r != first]
        self.settings.setValue("recent", recent[:KEPT])
        self.settings.setValue("last_folder", str(paths[0].parent if paths[0].is_file() else paths[0]))
        self._update()
