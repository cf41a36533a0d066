"""The slice list's model on its own: a consistent Qt model through a triage, rows that show what the session knows
when it is set, greying that follows the scope verdicts, and probabilities sorted by their exact value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from brainmri_desktop.core.inference import SliceResult, TTAConfig
from brainmri_desktop.core.io.slices import Slice
from brainmri_desktop.core.scope import OUT, Evidence, Kind, ScopeVerdict, rule_check
from brainmri_desktop.core.session import Session
from brainmri_desktop.ui.slice_table import EXACT_ROLE, OUT_OF_SCOPE_COLOUR, P_COLUMN, SliceList

from .synthetic import blob_image

SCOUT = ScopeVerdict(OUT, Kind.LOCALISER, "a scout image", Evidence.HEADERS)


def _session(n: int, scouts: tuple[int, ...] = ()) -> Session:
    slices = [Slice(Path(f"/nowhere/s{i}.png"), blob_image(("none", "small", "large")[i % 3], 64, 56, seed=i))
              for i in range(n)]
    return Session(slices, scope=(rule_check, lambda item, _p: SCOUT if int(item.path.stem[1:]) in scouts else None))


@pytest.fixture
def slice_list(qtbot):
    widget = SliceList()
    qtbot.addWidget(widget)
    return widget


def _greyed(model, row: int) -> list[bool]:
    return [model.index(row, c).data(Qt.ForegroundRole) == OUT_OF_SCOPE_COLOUR for c in range(model.columnCount())]


def test_the_table_stays_a_consistent_qt_model_through_a_triage(slice_list, qtmodeltester, tiny):
    qtmodeltester.check(slice_list.proxy)  # the tester then watches every signal of what follows
    session = _session(7, scouts=(4,))
    slice_list.model.set_session(session)
    session.start(tiny.manifest)
    for chunk in session.triage(tiny, TTAConfig(count=1), chunk=3):
        session.accept(chunk)
        slice_list.show_session(session, set(chunk.results))
    slice_list.flagged_only.setChecked(True)
    session.mark(1, "agree", "", "dr test")
    slice_list.show_session(session, {1})
    slice_list.flagged_only.setChecked(False)
    slice_list.table.sortByColumn(P_COLUMN, Qt.DescendingOrder)
    slice_list.model.set_session(None)
    assert slice_list.proxy.rowCount() == 0
    qtmodeltester.check(slice_list.proxy)


def test_rows_show_what_the_session_knows_and_the_grey_goes_with_the_verdict(slice_list, tiny):
    session = _session(6, scouts=(4,))
    session.run(tiny, TTAConfig(count=1))
    session.mark(2, "disagree", "", "dr test")
    model = slice_list.model
    model.set_session(session)  # a series triaged earlier, shown again
    assert [model.index(r, 0).data() for r in range(6)] == [1, 2, 3, 4, 5, 6]
    assert [model.index(r, 1).data() for r in range(6)] == [s.label for s in session.slices]
    assert [model.index(r, P_COLUMN).data(EXACT_ROLE) for r in range(6)] == [session.results[r].probability
                                                                            for r in range(6)]
    assert "disagree" in model.index(2, 3).data()
    assert all(_greyed(model, 4)) and not any(_greyed(model, 3))
    assert "a scout image" in model.index(4, 1).data(Qt.ToolTipRole)

    session.start(tiny.manifest)  # another model: the results and verdicts are forgotten
    slice_list.show_session(session, set(range(6)))
    assert not any(_greyed(model, 4)) and model.index(4, 1).data(Qt.ToolTipRole) is None
    assert model.index(4, P_COLUMN).data() is None and model.index(4, P_COLUMN).data(EXACT_ROLE) is None
    assert "disagree" in model.index(2, 3).data()


def test_probabilities_show_three_decimals_and_sort_by_their_exact_value(slice_list):
    session = _session(3)
    session.results = {i: SliceResult(i, p, 0.0, p, p, 1, 0.5) for i, p in enumerate((0.1234, 0.1231, 0.9))}
    slice_list.model.set_session(session)
    slice_list.table.sortByColumn(P_COLUMN, Qt.AscendingOrder)
    order = [slice_list.proxy.slice_at(r) for r in range(3)]
    assert order == [1, 0, 2]  # 0.1231 before 0.1234, though both read 0.123
    assert [slice_list.proxy.index(r, P_COLUMN).data() for r in range(3)] == ["0.123", "0.123", "0.900"]
    assert np.isclose(slice_list.proxy.index(2, P_COLUMN).data(EXACT_ROLE), 0.9)


def test_a_long_study_is_named_in_batches_and_a_newer_session_wins(slice_list, qtbot):
    def named(n: int, prefix: str) -> Session:
        return Session([Slice(Path(f"/nowhere/{prefix}{i:04d}.png"), np.zeros((4, 4), np.uint8)) for i in range(n)])

    model = slice_list.model
    model.set_session(named(700, "a"))
    assert model.index(0, 1).data() == "a0000.png"  # the first rows at once
    newer = named(300, "b")
    model.set_session(newer)  # before the first one's names are all written
    qtbot.waitUntil(lambda: model.index(299, 1).data() is not None)
    qtbot.wait(50)  # room for any batch of the first session still queued
    assert model.rowCount() == 300
    assert [model.index(r, 0).data() for r in range(300)] == list(range(1, 301))
    assert [model.index(r, 1).data() for r in range(300)] == [s.label for s in newer.slices]
