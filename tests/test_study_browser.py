"""The study browser driven through its real tree, offscreen: grouping, counts, thumbnails, scope badges, selection and
the hidden patient identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from brainmri_desktop.core.io.slices import PatientInfo, SeriesInfo, Slice
from brainmri_desktop.ui.study_browser import COUNT, NAME, SCOPE, THUMB, UID_ROLE, StudyBrowser

ALICE = PatientInfo(name="Doe^Alice", patient_id="PID-1", birth_date="19700101")
BOB = PatientInfo(name="Roe^Bob", patient_id="PID-2")


def _series(uid, number, description, study_uid, study_date, study_description="MR HEAD"):
    return SeriesInfo(uid, description, "MR", study_description, study_date, study_uid, number)


def _slices(series: SeriesInfo, n: int, patient: PatientInfo, shape=(32, 48)) -> list[Slice]:
    # Slice i is a flat image of value 100 * i: its thumbnail says which slice it was made from.
    return [Slice(Path(f"{series.uid}-{i}.dcm"), np.full(shape, 100 * i, np.int16), window=(100.0, 200.0),
                  series=series, patient=patient) for i in range(n)]


T2 = _series("1.1.2", 2, "T2 AX", "study-new", "20260301")
T1 = _series("1.1.1", 1, "T1 AX", "study-new", "20260301")
FLAIR_OLD = _series("1.0.5", 5, "FLAIR", "study-old", "20250101")
BOB_T1 = _series("2.1.1", 1, "T1", "study-bob", "20260102")


@pytest.fixture
def slices():
    # Given out of order: the browser orders studies by date and series by number.
    return _slices(T2, 4, ALICE) + _slices(T1, 3, ALICE) + _slices(FLAIR_OLD, 2, ALICE) + _slices(BOB_T1, 5, BOB)


@pytest.fixture
def browser(qtbot, slices):
    b = StudyBrowser()
    qtbot.addWidget(b)
    b.resize(500, 600)
    b.show()
    b.set_slices(slices)
    return b


def _texts(model, parent=None, column=NAME):
    parent = parent if parent is not None else model.invisibleRootItem().index()
    return [model.index(r, column, parent).data() for r in range(model.rowCount(parent))]


def _all_text(model) -> str:
    out, stack = [], [model.invisibleRootItem().index()]
    while stack:
        parent = stack.pop()
        for r in range(model.rowCount(parent)):
            for c in range(model.columnCount(parent)):
                index = model.index(r, c, parent)
                out += [str(index.data() or ""), str(index.data(Qt.ToolTipRole) or "")]
            stack.append(model.index(r, 0, parent))
    return "\n".join(out)


def test_tree_groups_patients_studies_and_series_with_counts(browser):
    m = browser.model
    assert _texts(m) == ["Patient 1 (identity hidden)", "Patient 2 (identity hidden)"]
    assert _texts(m, column=COUNT) == ["9", "5"]
    alice = m.index(0, 0)
    assert _texts(m, alice) == ["2025-01-01 MR HEAD", "2026-03-01 MR HEAD"]
    new_study = m.index(1, 0, alice)
    assert _texts(m, new_study) == ["#1 T1 AX (MR)", "#2 T2 AX (MR)"]
    assert _texts(m, new_study, COUNT) == ["3", "4"]
    assert _texts(m, m.index(0, 0, alice)) == ["#5 FLAIR (MR)"]


def test_clicking_a_series_emits_its_uid_and_indices_map_back(qtbot, browser, slices):
    index = browser.series_index(T1.uid)
    rect = browser.tree.visualRect(index)
    with qtbot.waitSignal(browser.seriesSelected, timeout=1000) as signal:
        qtbot.mouseClick(browser.tree.viewport(), Qt.LeftButton, pos=rect.center())
    assert signal.args == [T1.uid]
    assert [slices[i].series.uid for i in browser.indices_of(T1.uid)] == [T1.uid] * 3
    assert browser.indices_of(T1.uid) == [4, 5, 6]


def test_keyboard_moves_between_series(qtbot, browser):
    browser.select_series(T1.uid)
    seen = []
    browser.seriesSelected.connect(seen.append)
    browser.tree.setFocus()
    qtbot.keyClick(browser.tree, Qt.Key_Down)
    assert seen == [T2.uid]


def test_selecting_a_patient_or_study_row_emits_nothing(qtbot, browser):
    seen = []
    browser.seriesSelected.connect(seen.append)
    browser.tree.setCurrentIndex(browser.model.index(0, 0))
    browser.tree.setCurrentIndex(browser.model.index(0, 0, browser.model.index(0, 0)))
    assert seen == []


def test_each_series_has_a_thumbnail_of_its_middle_slice(browser):
    for uid in (T1.uid, T2.uid, FLAIR_OLD.uid, BOB_T1.uid):
        icon = browser.series_index(uid).data(Qt.DecorationRole)
        assert icon is not None and not icon.isNull()
    pixmap = browser.series_index(T1.uid).data(Qt.DecorationRole).pixmap(THUMB, THUMB)
    assert max(pixmap.width(), pixmap.height()) == THUMB and pixmap.width() > pixmap.height()
    # T1 has 3 slices: the middle one has value 100, half-way up the window (100, 200): mid grey.
    assert pixmap.toImage().pixelColor(pixmap.width() // 2, pixmap.height() // 2).value() == pytest.approx(127, abs=2)
    # T2 has 4: its middle (index 2, value 200) is white in that window.
    pixmap = browser.series_index(T2.uid).data(Qt.DecorationRole).pixmap(THUMB, THUMB)
    assert pixmap.toImage().pixelColor(pixmap.width() // 2, pixmap.height() // 2).value() == 255


def test_scope_badge_shows_the_reason(browser):
    browser.set_scope({T1.uid: None, T2.uid: "diffusion-weighted series (b = 1000)"})
    t1 = browser.series_index(T1.uid, SCOPE)
    t2 = browser.series_index(T2.uid, SCOPE)
    assert t1.data() == "in scope"
    assert "out of scope" in t2.data() and "b = 1000" in t2.data(Qt.ToolTipRole)
    assert browser.series_index(FLAIR_OLD.uid, SCOPE).data() == ""  # not checked: no badge


def test_scope_badge_reads_verdicts_with_a_status(browser):
    from dataclasses import dataclass

    @dataclass
    class Verdict:  # the shape of core.scope.ScopeVerdict
        status: str
        reason: str = ""

    browser.set_scope({T1.uid: Verdict("undecided", "the headers do not give the slice orientation"),
                       T2.uid: Verdict("out", "a diffusion image"), FLAIR_OLD.uid: Verdict("in")})
    assert browser.series_index(T1.uid, SCOPE).data() == "scope not decided"
    assert "orientation" in browser.series_index(T1.uid, SCOPE).data(Qt.ToolTipRole)
    assert "out of scope" in browser.series_index(T2.uid, SCOPE).data()
    assert browser.series_index(FLAIR_OLD.uid, SCOPE).data() == "in scope"


def test_scope_given_before_the_slices_shows_once_they_arrive(qtbot, slices):
    b = StudyBrowser()
    qtbot.addWidget(b)
    b.set_scope({BOB_T1.uid: "not a brain MRI"})
    b.set_slices(slices)
    assert "out of scope" in b.series_index(BOB_T1.uid, SCOPE).data()


def test_patient_identity_hidden_by_default_and_shown_on_request(browser):
    assert browser.patient_hidden
    text = _all_text(browser.model)
    assert "Doe" not in text and "PID-1" not in text and "Roe" not in text and "1970" not in text
    browser.set_patient_hidden(False)
    assert _texts(browser.model) == ["Doe^Alice (PID-1)", "Roe^Bob (PID-2)"]
    browser.set_patient_hidden(True)
    assert "Doe" not in _all_text(browser.model)


def test_images_without_series_or_patient_each_form_a_series(qtbot):
    b = StudyBrowser()
    qtbot.addWidget(b)
    pngs = [Slice(Path(f"/data/scan{i}.png"), np.zeros((8, 8), np.uint8)) for i in range(2)]
    b.set_slices(pngs)
    assert len(b.series_uids()) == 2
    assert _texts(b.model) == ["Patient 1 (identity hidden)"]
    b.set_patient_hidden(False)
    assert _texts(b.model) == ["Patient (no identity in the files)"]
    study = b.model.index(0, 0, b.model.index(0, 0))
    assert study.data() == "Study (undescribed)"
    assert sorted(_texts(b.model, study)) == ["scan0.png", "scan1.png"]


def test_loading_again_replaces_the_tree(browser):
    browser.set_slices(_slices(BOB_T1, 2, BOB))
    assert browser.model.rowCount() == 1 and browser.series_uids() == [BOB_T1.uid]
    with pytest.raises(KeyError):
        browser.indices_of(T1.uid)


def test_series_rows_carry_their_uid(browser):
    assert browser.series_index(T2.uid).data(UID_ROLE) == T2.uid


def test_series_read_by_the_loader_are_grouped_with_identity_hidden(qtbot, tmp_path):
    from brainmri_desktop.core.io import load_paths

    from .synthetic import write_dicom_series

    write_dicom_series(tmp_path / "t1", n=6, description="T1 AX")
    write_dicom_series(tmp_path / "t2", n=4, description="T2 AX")
    slices = load_paths([tmp_path]).slices
    b = StudyBrowser()
    qtbot.addWidget(b)
    b.set_slices(slices)
    counts = sorted(len(b.indices_of(uid)) for uid in b.series_uids())
    assert counts == [4, 6]
    names = {b.series_index(uid).data() for uid in b.series_uids()}
    assert names == {"T1 AX (MR)", "T2 AX (MR)"}
    assert "Synthetic" not in _all_text(b.model) and "SYN-0001" not in _all_text(b.model)
