"""The study browser: patient / study / series tree with a thumbnail, the slice count and the scope verdict of each
series; selecting a series emits its UID. Patient identity is hidden unless the reader asks for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QTreeView, QVBoxLayout, QWidget

from ..core.io.slices import PatientInfo, SeriesInfo, Slice
from .image_view import grey_qimage

THUMB = 64  # px, the longer side of a thumbnail
UID_ROLE = Qt.UserRole + 1
NAME, COUNT, SCOPE = range(3)
OUT_OF_SCOPE, IN_SCOPE, UNDECIDED = "out of scope", "in scope", "scope not decided"


@dataclass
class SeriesGroup:
    info: SeriesInfo
    indices: list[int] = field(default_factory=list)  # positions of its slices in the list given to the browser


@dataclass
class StudyGroup:
    uid: str
    description: str
    date: str
    series: dict[str, SeriesGroup] = field(default_factory=dict)


@dataclass
class PatientGroup:
    patient: PatientInfo
    studies: dict[str, StudyGroup] = field(default_factory=dict)


def series_of(slice_: Slice) -> SeriesInfo:
    # A file without a series (a PNG, say) is a series of its own, as the study reader counts it.
    return slice_.series or SeriesInfo(uid=f"file:{slice_.path}")


def group_slices(slices: Sequence[Slice]) -> list[PatientGroup]:
    """Patients in the order met; studies by date; series by number, then description."""
    patients: dict[tuple[str, str], PatientGroup] = {}
    # Groups are made when first met, not offered to setdefault for every slice: this runs on the UI thread as a
    # study opens, and three objects per slice of a 2,000-slice study cost it 12 ms.
    for i, s in enumerate(slices):
        info = series_of(s)
        patient_key = (s.patient.patient_id, s.patient.name)
        if (patient := patients.get(patient_key)) is None:
            patient = patients[patient_key] = PatientGroup(s.patient)
        study_key = info.study_uid or f"{info.study_description}|{info.study_date}"
        if (study := patient.studies.get(study_key)) is None:
            study = patient.studies[study_key] = StudyGroup(info.study_uid, info.study_description, info.study_date)
        if (series := study.series.get(info.uid)) is None:
            series = study.series[info.uid] = SeriesGroup(info)
        series.indices.append(i)
    for patient in patients.values():
        patient.studies = dict(sorted(patient.studies.items(), key=lambda kv: kv[1].date))
        for study in patient.studies.values():
            study.series = dict(sorted(study.series.items(), key=lambda kv: (
                kv[1].info.number is None, kv[1].info.number or 0, kv[1].info.description)))
    return list(patients.values())


def patient_label(patient: PatientInfo, ordinal: int, hidden: bool) -> str:
    if hidden:
        return f"Patient {ordinal} (identity hidden)"
    if not (patient.name or patient.patient_id):
        return "Patient (no identity in the files)"
    return f"{patient.name or '?'} ({patient.patient_id or 'no ID'})"


def study_label(study: StudyGroup) -> str:
    date = study.date
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return " ".join(p for p in (date, study.description or ("" if date else "Study (undescribed)")) if p)


def series_label(info: SeriesInfo) -> str:
    name = info.description or info.uid.split(":", 1)[-1].rsplit("/", 1)[-1]
    number = f"#{info.number} " if info.number is not None else ""
    modality = f" ({info.modality})" if info.modality else ""
    return f"{number}{name}{modality}"


def thumbnail(slice_: Slice) -> QPixmap:
    unit = slice_.display_image()
    h, w = unit.shape
    scale = THUMB / max(h, w)
    small = cv2.resize(unit.astype(np.float32), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    return QPixmap.fromImage(grey_qimage(small))


def scope_badge(verdict) -> tuple[str, str, QColor]:
    """(text, tooltip, colour) of the scope column for a reason string (out), None (in) or a verdict object."""
    if verdict is None:
        status, reason = "in", ""
    elif isinstance(verdict, str):
        status, reason = "out", verdict
    else:
        status, reason = verdict.status, verdict.reason
    if status == "out":
        return (f"\u26a0 {OUT_OF_SCOPE}", f"Outside what the model was made for: {reason}. "
                "Its results here are not a triage.", QColor(235, 150, 60))
    if status == "in":
        return IN_SCOPE, "The model was made for this kind of series.", QColor(110, 200, 130)
    reason = reason or "Nothing in the files tells whether the model was made for this series."
    return UNDECIDED, reason, QColor(170, 170, 170)


class StudyBrowser(QWidget):
    seriesSelected = Signal(str)  # the series UID

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = QStandardItemModel(0, 3, self)
        self.model.setHorizontalHeaderLabels(["Series", "Slices", "Scope"])
        self.tree = QTreeView()
        self.tree.setModel(self.model)
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.tree.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.tree.selectionModel().currentRowChanged.connect(self._current_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree)
        self._groups: list[PatientGroup] = []
        self._series: dict[str, SeriesGroup] = {}
        self._rows: dict[str, QStandardItem] = {}
        self._scope: dict[str, object] = {}
        self._hidden = True

    # ---------------------------------------------------------------- content
    def set_slices(self, slices: Sequence[Slice]) -> None:
        self._groups = group_slices(slices)
        self.model.removeRows(0, self.model.rowCount())
        self._series.clear()
        self._rows.clear()
        for ordinal, patient in enumerate(self._groups, 1):
            p_item = QStandardItem(patient_label(patient.patient, ordinal, self._hidden))
            p_count = sum(len(g.indices) for st in patient.studies.values() for g in st.series.values())
            self.model.appendRow([p_item, self._count_item(p_count), QStandardItem()])
            for study in patient.studies.values():
                s_item = QStandardItem(study_label(study))
                s_count = sum(len(g.indices) for g in study.series.values())
                p_item.appendRow([s_item, self._count_item(s_count), QStandardItem()])
                for uid, group in study.series.items():
                    s_item.appendRow(self._series_row(uid, group, slices))
        self.tree.expandAll()
        for column in (NAME, COUNT):
            self.tree.resizeColumnToContents(column)

    def _count_item(self, count: int) -> QStandardItem:
        item = QStandardItem(str(count))
        item.setData(count, Qt.UserRole)
        item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
        return item

    def _series_row(self, uid: str, group: SeriesGroup, slices: Sequence[Slice]) -> list[QStandardItem]:
        self._series[uid] = group
        name = QStandardItem(series_label(group.info))
        name.setData(uid, UID_ROLE)
        name.setIcon(QIcon(thumbnail(slices[group.indices[len(group.indices) // 2]])))
        n = len(group.indices)
        name.setToolTip(f"{series_label(group.info)}: {n} slice{'s' if n != 1 else ''}")
        scope = QStandardItem()
        self._rows[uid] = scope
        self._show_scope(uid)
        return [name, self._count_item(n), scope]

    # ------------------------------------------------------------------ scope
    def set_scope(self, verdicts: Mapping[str, object]) -> None:
        """Per series UID: the reason it is out of the model's scope, or None when it is in scope; or a verdict with
        `status` ("in", "out", "undecided") and `reason` (core.scope.ScopeVerdict). Series not in `verdicts` show
        nothing (not checked yet)."""
        self._scope.update(verdicts)
        for uid in verdicts:
            if uid in self._rows:
                self._show_scope(uid)
        self.tree.resizeColumnToContents(SCOPE)

    def _show_scope(self, uid: str) -> None:
        item = self._rows[uid]
        text, tip, colour = scope_badge(self._scope[uid]) if uid in self._scope else ("", "", None)
        item.setText(text)
        item.setToolTip(tip)
        if colour is not None:
            item.setForeground(colour)

    # -------------------------------------------------------------- identity
    @property
    def patient_hidden(self) -> bool:
        return self._hidden

    def set_patient_hidden(self, hidden: bool) -> None:
        self._hidden = hidden
        for ordinal, patient in enumerate(self._groups, 1):
            self.model.item(ordinal - 1, NAME).setText(patient_label(patient.patient, ordinal, hidden))

    # -------------------------------------------------------------- selection
    def series_uids(self) -> list[str]:
        return list(self._series)

    def indices_of(self, uid: str) -> list[int]:
        """Positions, in the list given to set_slices, of the series' slices."""
        return list(self._series[uid].indices)

    def series_index(self, uid: str, column: int = NAME) -> QModelIndex:
        """The model index of a series' row, in a column (NAME, COUNT or SCOPE)."""
        return self._rows[uid].index().siblingAtColumn(column)

    def select_series(self, uid: str, notify: bool = True) -> None:
        """Makes the series the current row; `notify=False` when the window already shows it."""
        if uid in self._rows:
            self.blockSignals(not notify)
            self.tree.setCurrentIndex(self.series_index(uid))
            self.blockSignals(False)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        uid = current.siblingAtColumn(NAME).data(UID_ROLE)
        if uid:
            self.seriesSelected.emit(uid)
