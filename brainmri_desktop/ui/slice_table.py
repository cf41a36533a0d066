"""The slice list as a Qt model: one row per slice, results and review marks shown as they arrive.

A model rather than a QTableWidget so that a chunk of results costs a dataChanged over its rows, not a pass over
every item of a 2,000-slice study (that pass stalled the event loop for a quarter of a second per chunk).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt

from ..core.inference import SliceResult
from ..core.io.slices import Slice
from ..core.review import Mark

FLAG, SECOND = "\u25cf", "?"
SORT_ROLE = Qt.UserRole  # exact values: the shown probability is rounded, and rounding makes ties


class SliceTableModel(QAbstractTableModel):
    HEADERS = ("#", "slice", "p", "flag")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._slices: list[Slice] = []
        self._results: Mapping[int, SliceResult] = {}
        self._marks: Mapping[int, Mark] = {}

    def set_study(self, slices: list[Slice], results: Mapping[int, SliceResult], marks: Mapping[int, Mark]) -> None:
        self.beginResetModel()
        self._slices, self._results, self._marks = slices, results, marks
        self.endResetModel()

    def refresh(self, results: Mapping[int, SliceResult], marks: Mapping[int, Mark],
                rows: Iterable[int] | None = None) -> None:
        """Shows new results or marks, for the given slices (all when None)."""
        self._results, self._marks = results, marks
        rows = range(len(self._slices)) if rows is None else sorted(rows)
        if rows:
            self.dataChanged.emit(self.index(rows[0], 2), self.index(rows[-1], 3))

    def result(self, row: int) -> SliceResult | None:
        return self._results.get(row)

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._slices)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        row, col = index.row(), index.column()
        if role not in (Qt.DisplayRole, SORT_ROLE) or not 0 <= row < len(self._slices):
            return None
        if col == 0:
            return row + 1
        if col == 1:
            return self._slices[row].label
        r = self._results.get(row)
        if col == 2:
            if role == SORT_ROLE:
                return r.probability if r else -1.0
            return round(r.probability, 3) if r else None
        mark = self._marks.get(row)
        flag = (FLAG if r and r.flagged else "") + (SECOND if r and r.second_look else "")
        return flag + (f" {mark.verdict}" if mark else "")


class FlaggedFilter(QSortFilterProxyModel):
    """Sorting, and the 'flagged only' view: slices over the threshold or that need a second look."""

    def __init__(self, source: SliceTableModel, parent=None):
        super().__init__(parent)
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self._flagged_only = False

    def set_flagged_only(self, on: bool) -> None:
        self._flagged_only = on
        self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        if not self._flagged_only:
            return True
        r = self.sourceModel().result(source_row)
        return bool(r and (r.flagged or r.second_look))

    def slice_at(self, row: int) -> int:
        return self.mapToSource(self.index(row, 0)).row()

    def row_of(self, slice_index: int) -> int:
        """The view row of a slice, or -1 when it is filtered out."""
        return self.mapFromSource(self.sourceModel().index(slice_index, 0)).row()
