"""The slice list: a Qt model over the session (one row per slice, results, decisions and marks shown as they
arrive), its 'flagged only' filter, and the dock widget that holds them with the study's summary.

The cells live in Qt's own item model, written from the session when a slice's result, decision or mark changes:
a view's paint asks about ten roles of every visible cell, and each question answered in Python (with two more
calls to count rows and columns per cell) made the slice list the costliest widget of the window to paint
(docs/EXPERIMENTS.md, 2026-12-04 fifth session).
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QCheckBox, QHeaderView, QLabel, QTableView, QVBoxLayout, QWidget

from ..core.session import Decision, Session

FLAG, SECOND, OUT = "\u25cf", "?", "\u2205"
OUT_OF_SCOPE_COLOUR = QColor(128, 128, 128)  # greyed: the model's answer on such a slice is no triage
P_COLUMN, FLAG_COLUMN = 2, 3
NAMES_PER_TURN = 128  # rows numbered and named per turn of the event loop (about 2 ms here)
# On the flag cell: "1" when the 'flagged only' view shows the row (the proxy filters on it in C++, not in Python).
SHOWN_FLAGGED_ROLE = Qt.UserRole + 1
# On the probability cell: the exact probability, which the column sorts by (the text shows three decimals, and
# rounding would make ties). Written as text rather than formatted by a delegate: a paint then calls no Python.
EXACT_ROLE = Qt.UserRole + 2


class SliceTableModel(QStandardItemModel):
    HEADERS = ("#", "slice", "p", "flag")

    def __init__(self, parent=None):
        super().__init__(0, len(self.HEADERS), parent)
        self.setHorizontalHeaderLabels(self.HEADERS)
        self._session: Session | None = None
        self._greyed: set[int] = set()  # rows whose cells carry a scope colour or tip, to be cleared when it goes
        self._generation = 0  # of the session shown: a batch of names for an earlier one is dropped

    def set_session(self, session: Session | None) -> None:
        """One row per slice, with what the session already knows of it; the rows' numbers and names follow in
        batches, a turn of the event loop each, so that a long study's opening does not stall the window."""
        self._session, self._greyed = session, set()
        self._generation += 1
        self.beginResetModel()
        # Written with the model's signals held: one reset, not a signal per cell.
        held = self.blockSignals(True)
        try:
            self.setRowCount(0)
            self.setRowCount(len(session.slices) if session is not None else 0)
            if session is not None:
                known = set(session.results) | set(session.marks) | set(session.verdicts)
                self._write(sorted(known), session.decisions())
        finally:
            self.blockSignals(held)
        self.endResetModel()
        self._name_rows(self._generation, 0)

    def _name_rows(self, generation: int, start: int) -> None:
        s = self._session
        if generation != self._generation or s is None or start >= len(s.slices):
            return
        stop = min(len(s.slices), start + NAMES_PER_TURN)
        held = self.blockSignals(True)
        try:
            # Items made by the model itself, not in Python: dropping those made in Python cost 3.5 us each.
            for row in range(start, stop):
                self.setData(self.index(row, 0), row + 1)
                self.setData(self.index(row, 1), s.slices[row].label)
        finally:
            self.blockSignals(held)
        self.dataChanged.emit(self.index(start, 0), self.index(stop - 1, 1))
        QTimer.singleShot(0, self, lambda: self._name_rows(generation, stop))

    def refresh(self, rows: Iterable[int] | None = None, decisions: dict[int, Decision] | None = None) -> None:
        """Shows new results, decisions or marks, for the given slices (all when None); a scope verdict greys the
        whole row. `decisions`: the session's, when the caller has them already."""
        if self._session is None:
            return
        rows = range(self.rowCount()) if rows is None else sorted(rows)
        if not rows:
            return
        held = self.blockSignals(True)
        try:
            self._write(rows, self._session.decisions() if decisions is None else decisions)
        finally:
            self.blockSignals(held)
        # One signal over the span: the proxy filters and sorts those rows again by itself (dynamicSortFilter).
        self.dataChanged.emit(self.index(rows[0], 0), self.index(rows[-1], len(self.HEADERS) - 1))

    def _write(self, rows: Iterable[int], decisions: dict[int, Decision]) -> None:
        s = self._session
        for row in rows:
            r, d, mark = s.results.get(row), decisions.get(row), s.marks.get(row)
            self.setData(self.index(row, P_COLUMN), f"{r.probability:.3f}" if r else None)
            self.setData(self.index(row, P_COLUMN), r.probability if r else None, EXACT_ROLE)
            flag = (FLAG if d and d.flagged else "") + (SECOND if d and d.second_look else "")
            flag += OUT if d and d.out_of_scope else ""
            self.setData(self.index(row, FLAG_COLUMN), flag + (f" {mark.verdict}" if mark else ""))
            self.setData(self.index(row, FLAG_COLUMN), "1" if d and (d.flagged or d.second_look) else None,
                         SHOWN_FLAGGED_ROLE)
            tip, grey = self._scope(row, d)
            if tip is None and row not in self._greyed:
                continue
            for col in range(len(self.HEADERS)):
                self.setData(self.index(row, col), tip, Qt.ToolTipRole)
                self.setData(self.index(row, col), OUT_OF_SCOPE_COLOUR if grey else None, Qt.ForegroundRole)
            (self._greyed.add if tip else self._greyed.discard)(row)

    def _scope(self, row: int, d: Decision | None) -> tuple[str | None, bool]:
        """The row's tip, and whether it is greyed: outside the model's scope, or flagged although unusual."""
        s = self._session
        if d is not None and d.warning:
            return f"Flagged; {d.warning}.", False
        verdict = s.verdicts.get(row)
        reason = d.out_of_scope if d is not None else (verdict.reason if verdict else None)
        if reason is None:
            return None, False
        gated = "" if s.include_out_of_scope else " Not flagged whatever its probability."
        return f"Outside what the model was trained on: {reason}.{gated}", True


class FlaggedFilter(QSortFilterProxyModel):
    """Sorting, and the 'flagged only' view: slices over the threshold or that need a second look."""

    def __init__(self, source: SliceTableModel, parent=None):
        super().__init__(parent)
        self.setSourceModel(source)
        self.setFilterRole(SHOWN_FLAGGED_ROLE)
        self.setFilterKeyColumn(FLAG_COLUMN)

    def set_flagged_only(self, on: bool) -> None:
        self.setFilterFixedString("1" if on else "")

    def lessThan(self, left: QModelIndex, right: QModelIndex) -> bool:
        """Study order for the number column; exact probabilities, slices without one first; text otherwise."""
        if left.column() == 0:
            return left.row() < right.row()
        if left.column() == P_COLUMN:
            a, b = left.data(EXACT_ROLE), right.data(EXACT_ROLE)
            return (-1.0 if a is None else a) < (-1.0 if b is None else b)
        return (left.data() or "") < (right.data() or "")

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
        # Unsorted until the reader clicks a column: the study order is the slice order.
        header.setSortIndicator(-1, Qt.AscendingOrder)
        self.table.setSortingEnabled(True)
        # Sizing to contents would measure every row of a long study on each update.
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        for column, width in ((0, 48), (2, 56), (3, 72)):
            header.resizeSection(column, width)
        self.table.setMinimumWidth(300)
        self._selected = -1  # the slice the window showed last
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
        if rows and (index := self.proxy.slice_at(rows[0].row())) != self._selected:
            self.sliceChosen.emit(index)

    def select(self, index: int) -> None:
        """Shows the window's slice as selected; only the reader's own choice of a row is announced (an echo would
        have the window draw the slice a second time)."""
        self._selected = index
        row = self.proxy.row_of(index)
        if row >= 0 and self.table.currentIndex().row() != row:
            self.table.selectRow(row)

    def show_session(self, session: Session, rows: Iterable[int] | None = None) -> None:
        """The rows of the given slices (all when None) and the summary, from the session."""
        decisions = session.decisions()  # once: this runs after every chunk of a triage
        self.model.refresh(rows, decisions)
        n, done = len(session.slices), len(session.results)
        flagged = sum(1 for d in decisions.values() if d.flagged)
        outside = sum(1 for d in decisions.values() if d.out_of_scope)
        gated = "included by probability" if session.include_out_of_scope else "not flagged"
        best = max((r.probability for r in session.results.values()), default=None)
        self.summary.setText(f"{flagged} of {n} slices flagged"
                             + (f"; highest probability {best:.3f}" if best is not None else "")
                             + (f"; {outside} outside what the model was trained on ({gated})" if outside else "")
                             + ("" if session.complete else f" ({done} done)"))
