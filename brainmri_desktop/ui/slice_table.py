"""The slice list: a Qt model over the session (one row per slice, results, decisions and marks shown as they
arrive), its 'flagged only' filter, and the dock widget that holds them with the study's summary.

A model rather than a QTableWidget so that a chunk of results costs a dataChanged over its rows, not a pass over
every item of a 2,000-slice study (that pass stalled the event loop for a quarter of a second per chunk).
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QCheckBox, QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from ..core.session import Decision, Session

FLAG, SECOND, OUT = "\u25cf", "?", "\u2205"
SORT_ROLE = Qt.UserRole  # exact values: the shown probability is rounded, and rounding makes ties
OUT_OF_SCOPE_COLOUR = QColor(128, 128, 128)  # greyed: the model's answer on such a slice is no triage
_ROLES = frozenset({Qt.DisplayRole, SORT_ROLE, Qt.ForegroundRole, Qt.ToolTipRole})


class SliceTableModel(QAbstractTableModel):
    HEADERS = ("#", "slice", "p", "flag")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._session: Session | None = None

    def set_session(self, session: Session | None) -> None:
        self.beginResetModel()
        self._session = session
        self.endResetModel()

    def refresh(self, rows: Iterable[int] | None = None) -> None:
        """Shows new results, decisions or marks, for the given slices (all when None); a scope verdict greys the
        whole row."""
        rows = range(self.rowCount()) if rows is None else sorted(rows)
        if rows:
            self.dataChanged.emit(self.index(rows[0], 0), self.index(rows[-1], len(self.HEADERS) - 1))

    def decision(self, row: int) -> Decision | None:
        return self._session.decision(row) if self._session else None

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() or self._session is None else len(self._session.slices)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        # A view asks for about ten roles of every cell it paints, on the UI thread: the four answered here are
        # told apart first, before anything is looked up.
        if role not in _ROLES or self._session is None:
            return None
        row, col = index.row(), index.column()
        if not 0 <= row < len(self._session.slices):
            return None
        if role in (Qt.ForegroundRole, Qt.ToolTipRole):
            d = self._session.decision(row)
            if d is not None and d.warning and role == Qt.ToolTipRole:
                return f"Flagged; {d.warning}."
            verdict = self._session.verdicts.get(row)
            reason = d.out_of_scope if d is not None else (verdict.reason if verdict else None)
            if reason is None:
                return None
            if role == Qt.ForegroundRole:
                return OUT_OF_SCOPE_COLOUR
            gated = "" if self._session.include_out_of_scope else " Not flagged whatever its probability."
            return f"Outside what the model was trained on: {reason}.{gated}"
        if role not in (Qt.DisplayRole, SORT_ROLE):
            return None
        if col == 0:
            return row + 1
        if col == 1:
            return self._session.slices[row].label
        if col == 2:
            r = self._session.results.get(row)
            if role == SORT_ROLE:
                return r.probability if r else -1.0
            return round(r.probability, 3) if r else None
        d = self._session.decision(row)
        mark = self._session.marks.get(row)
        flag = (FLAG if d and d.flagged else "") + (SECOND if d and d.second_look else "")
        flag += OUT if d and d.out_of_scope else ""
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
        d = self.sourceModel().decision(source_row)
        return bool(d and (d.flagged or d.second_look))

    def slice_at(self, row: int) -> int:
        return self.mapToSource(self.index(row, 0)).row()

    def row_of(self, slice_index: int) -> int:
        """The view row of a slice, or -1 when it is filtered out."""
        return self.mapFromSource(self.sourceModel().index(slice_index, 0)).row()


class SliceList(QWidget):
    """The left dock: the study's summary, the 'flagged only' switch and the slice table."""

    sliceChosen = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = SliceTableModel(self)
        self.proxy = FlaggedFilter(self.model, self)
        self.table = QTableView()
        self.table.setObjectName("sliceTable")
        self.table.setModel(self.proxy)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        # Unsorted until the reader clicks a column: the study order is the slice order, and sorting a long
        # study on every reset costs tens of thousands of calls into the model.
        header.setSortIndicator(-1, Qt.AscendingOrder)
        self.table.setSortingEnabled(True)
        # Sizing to contents would measure every row of a long study on each update.
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        for column, width in ((0, 48), (2, 56), (3, 72)):
            header.resizeSection(column, width)
        self.table.setMinimumWidth(300)
        self.table.selectionModel().selectionChanged.connect(self._selection)
        self.flagged_only = QCheckBox("flagged only")
        self.flagged_only.toggled.connect(self.proxy.set_flagged_only)
        self.summary = QLabel("No study open.")
        self.summary.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.flagged_only)
        lay.addWidget(self.table)

    def _selection(self, *_) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.sliceChosen.emit(self.proxy.slice_at(rows[0].row()))

    def select(self, index: int) -> None:
        row = self.proxy.row_of(index)
        if row >= 0 and self.table.currentIndex().row() != row:
            self.table.selectRow(row)

    def show_session(self, session: Session, rows: Iterable[int] | None = None) -> None:
        """The rows of the given slices (all when None) and the summary, from the session."""
        self.model.refresh(rows)  # the proxy filters and sorts the changed rows again by itself (dynamicSortFilter)
        n, done = len(session.slices), len(session.results)
        decisions = session.decisions().values()  # once: this runs after every chunk of a triage
        flagged = sum(1 for d in decisions if d.flagged)
        outside = sum(1 for d in decisions if d.out_of_scope)
        gated = "included by probability" if session.include_out_of_scope else "not flagged"
        best = max((r.probability for r in session.results.values()), default=None)
        self.summary.setText(f"{flagged} of {n} slices flagged"
                             + (f"; highest probability {best:.3f}" if best is not None else "")
                             + (f"; {outside} outside what the model was trained on ({gated})" if outside else "")
                             + ("" if session.complete else f" ({done} done)"))
