"""The tool bar: which model, which operating point, how many test-time views, and how the overlay is shown."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QLabel, QSlider, QSpinBox, QToolBar

from ..core.augment import MAX_TTA
from ..core.model_choice import display_name, find_model
from ..core.packages import ModelEntry
from ..core.session import Threshold


class ModelBar(QToolBar):
    modelChanged = Signal()  # the chosen model is another one
    thresholdChanged = Signal(object)  # a Threshold
    displayChanged = Signal()  # overlay, opacity or "what the model saw"

    def __init__(self, parent=None):
        super().__init__("Model", parent)
        self.setObjectName("modelBar")
        self.entries: dict[str, ModelEntry] = {}
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Every model found: bundled, user-trained and given folders")
        self.model_combo.currentIndexChanged.connect(lambda *_: self.modelChanged.emit())
        self.point_combo = QComboBox()
        for choice in Threshold:
            self.point_combo.addItem(choice.label, choice)
        self.point_combo.currentIndexChanged.connect(lambda *_: self.thresholdChanged.emit(self.threshold))
        self.tta = QSpinBox()
        self.tta.setRange(1, MAX_TTA)
        self.tta.setPrefix("TTA ")
        self.tta.setToolTip("Test-time augmentations (spent only on slices near the threshold)")
        self.overlay_toggle = QCheckBox("overlay")
        self.overlay_toggle.setChecked(True)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setMaximumWidth(120)
        self.opacity.setToolTip("Overlay opacity (colour map: jet, blue = none, red = strongest evidence)")
        self.model_input = QCheckBox("what the model saw")
        self.model_input.setToolTip("Show the exact model input: windowed, cropped, normalised and resized")
        for w in (self.overlay_toggle, self.model_input):
            w.toggled.connect(lambda *_: self.displayChanged.emit())
        self.opacity.valueChanged.connect(lambda *_: self.displayChanged.emit())
        self.hide_identity = QCheckBox("hide patient")
        self.hide_identity.setChecked(True)
        for w in (QLabel(" Model "), self.model_combo, self.point_combo, self.tta, self.overlay_toggle,
                  QLabel(" opacity "), self.opacity, self.model_input, self.hide_identity):
            self.addWidget(w)

    @property
    def threshold(self) -> Threshold:
        return self.point_combo.currentData()

    @property
    def entry(self) -> ModelEntry | None:
        return self.entries.get(self.model_combo.currentData())

    def set_entries(self, entries: list[ModelEntry]) -> bool:
        """Lists the usable packages, keeping the choice; a first choice is the command line's default. Says whether
        the chosen model changed (another package, or the same id with other content)."""
        entries = [e for e in entries if e.ok]
        ids = [e.manifest.id for e in entries]
        chosen = self.entry.manifest.content_key if self.entry is not None else None
        if ids == [self.model_combo.itemData(i) for i in range(self.model_combo.count())]:
            self.entries = {e.manifest.id: e for e in entries}
            # the chosen package re-exported or re-fitted under the same id is another model: its results are new
            return self.entry is not None and self.entry.manifest.content_key != chosen
        current = self.model_combo.currentData()
        self.entries = {e.manifest.id: e for e in entries}
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for e in entries:
            self.model_combo.addItem(display_name(e), e.manifest.id)
        index = self.model_combo.findData(current) if current else -1
        if index < 0 and entries:
            index = self.model_combo.findData(find_model(entries, None).manifest.id)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        return self.model_combo.currentData() != current

    def choose(self, model_id: str) -> None:
        index = self.model_combo.findData(model_id)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
