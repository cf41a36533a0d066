"""Review in the window, driven through its real widgets: who marked and when, clearing, notes saved as typed, the
reader name setting, and a PDF of a study flagging more slices than the old limit of 24."""

from __future__ import annotations

import getpass
from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QInputDialog

from brainmri_desktop.core.review import ReviewStore
from brainmri_desktop.ui.result_panel import NOTE_PAUSE_MS

from .pdf_text import pdf_text
from .synthetic import write_dicom_series
from .test_app import _open_and_wait, _set_threshold, window  # noqa: F401  (the window fixture)


def _open(qtbot, window, tmp_path, n: int = 5) -> None:  # noqa: F811
    write_dicom_series(tmp_path / "series", n=n, size=48)
    _open_and_wait(qtbot, window, [tmp_path / "series"])


def _saved(window):  # noqa: F811
    """The marks as a new window would read them from disk."""
    return ReviewStore(window.session.slices, window.session.reviews.path.parent).marks


def test_a_mark_shows_the_reader_name_set_once_and_the_time(qtbot, window, tmp_path):  # noqa: F811
    window.settings.setValue("reader_name", "Dr Test")
    _open(qtbot, window, tmp_path)
    window.select_slice(1)
    qtbot.keyClick(window, Qt.Key_A)
    mark = _saved(window)[1]
    assert (mark.verdict, mark.reader) == ("agree", "Dr Test")
    assert datetime.fromisoformat(mark.time).tzinfo is not None
    text = window.result_panel.text.toPlainText()
    assert f"Reader: agree (by Dr Test, {mark.when})" in text and mark.when.startswith("20")
    assert "agree" in window.slice_list.table.model().index(1, 3).data()


def test_without_a_reader_name_the_system_user_name_is_recorded(qtbot, window, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(getpass, "getuser", lambda: "sysuser")
    _open(qtbot, window, tmp_path)
    qtbot.mouseClick(window.result_panel.disagree, Qt.LeftButton)
    assert _saved(window)[0].reader == "sysuser"
    assert "by sysuser" in window.result_panel.text.toPlainText()


def test_reader_name_is_set_from_the_file_menu_and_kept_in_settings(qtbot, window, tmp_path, monkeypatch):  # noqa: F811
    _open(qtbot, window, tmp_path)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("  Dr Menu  ", True))
    window.findChild(QAction, "readerName").trigger()
    assert window.settings.value("reader_name") == "Dr Menu"
    qtbot.keyClick(window, Qt.Key_D)
    assert _saved(window)[0].reader == "Dr Menu"
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("ignored", False))  # Cancel changes nothing
    window.findChild(QAction, "readerName").trigger()
    assert window.settings.value("reader_name") == "Dr Menu"


def test_clear_takes_back_the_mark_and_its_note(qtbot, window, tmp_path):  # noqa: F811
    _open(qtbot, window, tmp_path)
    window.select_slice(2)
    window.result_panel.note.setText("artefact")
    qtbot.keyClick(window, Qt.Key_D)
    assert _saved(window)[2].note == "artefact"
    qtbot.keyClick(window, Qt.Key_C)
    assert window.session.marks == {} and _saved(window) == {}
    assert window.result_panel.note.text() == ""
    assert "Reader: not reviewed" in window.result_panel.text.toPlainText()
    qtbot.keyClick(window, Qt.Key_A)
    qtbot.mouseClick(window.result_panel.clear, Qt.LeftButton)  # the panel's button does the same
    assert _saved(window) == {}


def test_clear_key_clashes_with_no_other_shortcut(qtbot, window):  # noqa: F811
    keys = [k.toString() for a in window.findChildren(QAction) for k in a.shortcuts() if not k.isEmpty()]
    assert keys.count(QKeySequence("C").toString()) == 1
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)  # Qt fires none of a clash


def test_a_note_typed_then_moving_on_is_kept(qtbot, window, tmp_path):  # noqa: F811
    _open(qtbot, window, tmp_path)
    window.select_slice(1)
    qtbot.mouseClick(window.result_panel.note, Qt.LeftButton)
    qtbot.keyClicks(window.result_panel.note, "a dense check")  # A, D, N, C typed are letters, not shortcuts
    assert window.session.current == 1 and window.session.marks == {}
    window.select_slice(3)  # at once, before the pause that saves it
    assert window.result_panel.note.text() == ""
    mark = _saved(window)[1]
    assert (mark.verdict, mark.note) == ("", "a dense check")
    window.select_slice(1)
    assert window.result_panel.note.text() == "a dense check"
    assert "Reader: not reviewed; note by" in window.result_panel.text.toPlainText()


def test_a_note_is_saved_after_a_pause_in_typing_and_keeps_the_verdict(qtbot, window, tmp_path):  # noqa: F811
    _open(qtbot, window, tmp_path)
    qtbot.keyClick(window, Qt.Key_A)
    window.result_panel.note.setFocus()
    qtbot.keyClicks(window.result_panel.note, "margin sharp")
    assert _saved(window)[0].note == ""  # not yet: the pause has not passed
    qtbot.waitUntil(lambda: _saved(window)[0].note == "margin sharp", timeout=NOTE_PAUSE_MS * 5)
    assert _saved(window)[0].verdict == "agree"


def test_a_note_typed_before_closing_the_window_is_kept(qtbot, window, tmp_path):  # noqa: F811
    _open(qtbot, window, tmp_path)
    qtbot.keyClicks(window.result_panel.note, "last words")
    window.close()
    assert _saved(window)[0].note == "last words"


def test_the_pdf_of_30_flagged_slices_shows_them_all_with_the_readers_marks(qtbot, window, tmp_path):  # noqa: F811
    window.settings.setValue("reader_name", "Dr Pdf")
    _open(qtbot, window, tmp_path, n=30)
    _set_threshold(window, min(r.probability for r in window.session.results.values()) - 1e-9)
    assert len(window.session.flagged()) == 30  # more than the 24 the report used to stop at
    window.select_slice(27)
    qtbot.keyClick(window, Qt.Key_D)
    mark = window.session.marks[27]
    window.export_pdf(tmp_path / "out.pdf")
    qtbot.waitUntil(lambda: window.triage.export_worker is None, timeout=120000)
    assert window.status.text() == f"Saved {tmp_path / 'out.pdf'}"
    assert all(window.session.cam(i) is not None for i in range(30))  # maps for every slice shown, from the worker
    text = pdf_text((tmp_path / "out.pdf").read_bytes())
    assert all(f"slice {i + 1}: " in text for i in range(30))
    assert "left out" not in text
    assert f"reader: disagree (by Dr Pdf, {mark.when})" in text
    assert f"slice 28  disagree (by Dr Pdf, {mark.when})" in text  # the list of every mark


def test_a_note_typed_then_switching_series_stays_with_its_series(qtbot, window, tmp_path):  # noqa: F811
    write_dicom_series(tmp_path / "study" / "t1", n=4, size=48, description="T1 AX")
    write_dicom_series(tmp_path / "study" / "t2", n=3, size=48, description="T2 AX")
    _open_and_wait(qtbot, window, [tmp_path / "study"])
    first = window.session
    other = next(uid for uid, s in window.study.sessions.items() if s is not first)
    window.select_slice(2)
    qtbot.keyClicks(window.result_panel.note, "compare with T2")
    window.show_series(other)  # at once, before the pause that saves it
    assert window.session is not first and window.session.marks == {}
    assert window.result_panel.note.text() == ""
    saved = ReviewStore(first.slices, first.reviews.path.parent).marks
    assert (saved[2].verdict, saved[2].note) == ("", "compare with T2")
