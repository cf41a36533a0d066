"""The Help menu's dialogs: a model's card and the About box."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtWidgets import QMessageBox, QWidget

from .. import __version__
from ..core.packages import ModelEntry, user_models_dir
from ..core.wording import DISCLAIMER


def show_model_card(parent: QWidget, entry: ModelEntry | None) -> None:
    if entry is None:
        return
    card = entry.path / "MODEL_CARD.md"
    text = card.read_text(encoding="utf-8") if card.exists() else entry.manifest.to_json()
    box = QMessageBox(parent)
    box.setWindowTitle(f"Model card: {entry.manifest.name}")
    box.setText(f"{entry.manifest.name} ({entry.manifest.id})")
    box.setDetailedText(text)
    box.show()


def show_about(parent: QWidget, entries: Iterable[ModelEntry]) -> None:
    from ..selftest import build_commit

    models = "<br>".join(f"{e.manifest.name}: {e.manifest.id} v{e.manifest.version} ({e.source})" for e in entries)
    QMessageBox.about(parent, "About BrainMRI", f"<h3>BrainMRI {__version__} ({build_commit()})</h3><p>{DISCLAIMER}</p>"
                                                f"<p>Models:<br>{models or 'none found'}</p>"
                                                f"<p>User models folder: {user_models_dir()}</p>")
