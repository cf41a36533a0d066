"""The reading workflow in the REAL main window, offscreen: slice scrolling from any focus, zoom, cine, window/level,
orientation, the readout in mm, the study browser with several series, the shortcut list and the triage strip."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtWidgets import QApplication

from brainmri_desktop.ui import shortcuts
from brainmri_desktop.ui.image_view import Orientation
from brainmri_desktop.ui.main_window import MainWindow
from brainmri_desktop.ui.study_browser import SCOPE
from brainmri_desktop.ui.triage_strip import FLAGGED, OUT_OF_SCOPE
from brainmri_desktop.ui.viewing import FULL

from .synthetic import head_image, write_dicom_series
from .test_viewing import _pixel_under, _wheel


@pytest.fixture
def window(qtbot, model_dir, tmp_path):
    w = MainWindow(models_dirs=[model_dir], settings=QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(w)
    w.bar.choose("tiny-cnn")
    w.show()
    w.activateWindow()  # the viewer's keys are window shortcuts: they fire in the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=2000)
    return w


def _all_done(w) -> bool:
    return (w.session is not None and w.triage.infer_worker is None
            and all(s.complete for s in w.study.sessions.values()))


def _open(qtbot, w, paths):
    w.open_paths(paths)
    qtbot.waitUntil(lambda: _all_done(w), timeout=60000)


@pytest.fixture
def series6(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=6)
    _open(qtbot, window, [tmp_path / "series"])
    return window


@pytest.fixture
def two_series(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "study" / "t1", n=6, description="T1 axial")
    write_dicom_series(tmp_path / "study" / "t2", n=4, description="T2 axial")
    _open(qtbot, window, [tmp_path / "study"])
    return window


def _uid_of(w, description: str) -> str:
    return next(uid for uid, s in w.study.sessions.items() if s.slices[0].series.description == description)


# ------------------------------------------------------------------ navigation
def test_wheel_over_either_view_scrolls_slices_and_does_not_zoom(series6):
    w = series6
    zoom = w.views.view.zoom
    _wheel(w.views.view, -120)
    assert w.session.current == 1
    _wheel(w.views.cam_view, -240)
    assert w.session.current == 3 and w.views.view.zoom == zoom
    _wheel(w.views.view, 120)
    assert w.session.current == 2
    assert w.slice_list.table.currentIndex().row() == 2  # the list follows


def test_ctrl_wheel_zooms_both_views_and_stays_on_the_slice(series6):
    w = series6
    zoom = w.views.view.zoom
    _wheel(w.views.view, 120, Qt.ControlModifier)
    assert w.session.current == 0
    assert w.views.view.zoom == pytest.approx(zoom * 1.2)
    assert w.views.cam_view.zoom == pytest.approx(zoom * 1.2)  # linked


def test_arrow_and_page_keys_from_the_image(qtbot, series6):
    w = series6
    w.views.view.setFocus()
    qtbot.keyClick(w.views.view, Qt.Key_Down)
    qtbot.keyClick(w.views.view, Qt.Key_Down)
    assert w.session.current == 2
    qtbot.keyClick(w.views.view, Qt.Key_PageDown)
    assert w.session.current == 5  # stops at the last slice
    qtbot.keyClick(w.views.view, Qt.Key_Home)
    assert w.session.current == 0
    qtbot.keyClick(w.views.view, Qt.Key_End)
    assert w.session.current == 5


def test_arrow_keys_from_the_sorted_slice_list_move_in_series_order(qtbot, series6):
    w = series6
    table = w.slice_list.table
    table.sortByColumn(2, Qt.DescendingOrder)  # by probability: table rows are no longer the series order
    w.select_slice(2)
    table.setFocus()
    qtbot.keyClick(table, Qt.Key_Down)
    assert w.session.current == 3
    qtbot.keyClick(table, Qt.Key_Up)
    qtbot.keyClick(table, Qt.Key_Up)
    assert w.session.current == 1
    assert w.slice_list.proxy.slice_at(table.currentIndex().row()) == 1  # the selected row is the slice shown


def test_cine_plays_through_the_series_with_space(qtbot, series6):
    w = series6
    w.tools.cine_bar.speed.setValue(30)
    seen = []
    w.tools.sliceRequested.connect(seen.append)
    qtbot.keyClick(w, Qt.Key_Space)
    qtbot.waitUntil(lambda: len(seen) >= 7, timeout=5000)
    qtbot.keyClick(w, Qt.Key_Space)
    assert seen[:7] == [1, 2, 3, 4, 5, 0, 1] and not w.tools.cine.running
    assert w.session.current == seen[-1]


# -------------------------------------------------------------- image tools
def test_presets_numeric_entry_and_reset_change_the_shown_window(qtbot, series6):
    w = series6
    bar = w.tools.window_bar
    assert w.tools.window == (1000.0, 2200.0)  # the file's own window
    before = w.views.view.shown_image().pixelColor(32, 32).value()
    bar.presets.textActivated.emit(FULL)  # what choosing the entry in the list does
    full = bar.preset_windows()[FULL]
    assert w.tools.window == full
    assert w.views.view.shown_image().pixelColor(32, 32).value() != before
    bar.width_spin.setFocus()
    bar.width_spin.selectAll()
    qtbot.keyClicks(bar.width_spin, "100")
    qtbot.keyClick(bar.width_spin, Qt.Key_Return)
    assert w.tools.window == (full[0], 100.0)
    w.views.view.setFocus()
    qtbot.keyClick(w, Qt.Key_W)  # reset
    assert w.tools.window == (1000.0, 2200.0)
    assert w.views.view.shown_image().pixelColor(32, 32).value() == before


def test_invert_flip_and_rotate_keys_turn_both_views(qtbot, series6):
    w = series6
    grey = w.views.view.shown_image().pixelColor(32, 32).value()
    qtbot.keyClick(w, Qt.Key_I)
    assert w.views.view.inverted and w.views.cam_view.inverted
    assert abs(w.views.view.shown_image().pixelColor(32, 32).value() - (255 - grey)) <= 1  # rounding
    qtbot.keyClick(w, Qt.Key_R)
    qtbot.keyClick(w, Qt.Key_H)
    expected = Orientation().rotated(1).flipped_horizontally()
    assert w.views.view.orientation == expected == w.views.cam_view.orientation
    qtbot.keyClick(w, Qt.Key_0, Qt.ControlModifier)
    assert w.views.view.orientation == Orientation() and not w.views.view.inverted


def test_readout_gives_mm_and_patient_coordinates_of_a_dicom_slice(qtbot, series6):
    w = series6
    qtbot.keyClick(w, Qt.Key_Down)
    z = w.session.slices[1].acquisition.image_position[2]
    assert _pixel_under(w.views.view, QPointF(10.5, 20.5)) == (10, 20)
    text = w.tools.readout.text()
    # 1 mm pixels, the first pixel at the origin, rows along +y (posterior), columns along +x (left)
    assert "x 10, y 20" in text and "10.0, 20.0 mm" in text and f"L 10.0 P 20.0 S {z:.1f} mm" in text
    w.bar.model_input.setChecked(True)  # the model's input lies on another grid: no mm there
    assert w.tools.readout.text() == ""
    _pixel_under(w.views.view, QPointF(10.5, 20.5))
    assert w.tools.readout.text() == ""


def test_ruler_measures_in_mm_on_the_real_window(qtbot, series6):
    from .test_viewing import _drag

    w = series6
    qtbot.keyClick(w, Qt.Key_M)
    view = w.views.view
    start, end = view.mapFromScene(QPointF(10, 10)), view.mapFromScene(QPointF(40, 50))
    measured = []
    view.measured.connect(measured.append)
    _drag(view, start, end, Qt.LeftButton)
    assert len(measured) == 1 and measured[0].unit == "mm"
    assert measured[0].value == pytest.approx(50.0, abs=1.5)  # 30 x 40 pixels of 1 mm


# ----------------------------------------------------------- several series
def test_a_folder_of_two_series_opens_both_in_the_browser_with_their_scope(two_series):
    w = two_series
    assert len(w.study.sessions) == 2 and len(w.browser.series_uids()) == 2
    sizes = sorted(len(s.slices) for s in w.study.sessions.values())
    assert sizes == [4, 6]
    # Both were triaged: the one shown first, the other in the background; each has its scope badge.
    assert all(s.manifest is not None and s.complete for s in w.study.sessions.values())
    badges = [w.browser.series_index(uid, SCOPE).data() for uid in w.browser.series_uids()]
    assert all(badges) and all("scope" in b for b in badges)


def test_switching_series_keeps_each_ones_marks_results_and_view(qtbot, two_series):
    w = two_series
    a, b = _uid_of(w, "T1 axial"), _uid_of(w, "T2 axial")
    w.browser.select_series(a)
    assert w.session is w.study.sessions[a]
    qtbot.keyClick(w, Qt.Key_Down)
    qtbot.keyClick(w, Qt.Key_Down)
    qtbot.keyClick(w, Qt.Key_D)  # disagree with slice 2
    qtbot.keyClick(w, Qt.Key_R)
    w.tools.window_bar.set_window(500.0, 300.0)
    results_a = dict(w.session.results)
    w.browser.select_series(b)
    assert w.session is w.study.sessions[b] and w.session.current == 0
    assert w.views.view.orientation == Orientation()  # a series seen for the first time starts upright
    assert w.tools.window == (1000.0, 2200.0) and w.slice_list.model.rowCount() == 4
    assert w.triage.infer_worker is None  # triaged already in the background: nothing runs again
    w.browser.select_series(a)
    assert w.session.current == 2 and w.session.marks[2].verdict == "disagree"
    assert w.session.results == results_a
    assert w.views.view.orientation == Orientation().rotated(1) and w.tools.window == (500.0, 300.0)
    assert w.slice_list.model.rowCount() == 6 and "disagree" in w.slice_list.model.index(2, 3).data()


def test_patient_names_in_the_browser_follow_hide_patient(two_series):
    w = two_series
    patient = w.browser.model.item(0, 0)
    assert "identity hidden" in patient.text()
    w.bar.hide_identity.setChecked(False)
    assert "Synthetic^Patient" in w.browser.model.item(0, 0).text()


# ---------------------------------------------------------------- help, strip
def test_the_shortcut_list_is_read_from_the_windows_actions(qtbot, window, monkeypatch):
    opened = []
    monkeypatch.setattr(shortcuts.ShortcutsDialog, "exec", lambda self: opened.append(self) or 0)
    qtbot.keyClick(window, Qt.Key_F1)
    assert len(opened) == 1
    table = opened[0].table
    rows = {table.item(r, 1).text(): table.item(r, 0).text() for r in range(table.rowCount())}
    assert rows["Next flagged slice"] == "N" and rows["Agree"] == "A"  # the Review menu's own actions
    assert rows["Invert grey levels"] == "I" and rows["Play / stop cine"] == "Space"
    assert rows["Previous / next slice"] == "Wheel" and rows["Zoom"] == "Ctrl+Wheel"
    view_menu = next(m for m in window.menuBar().actions() if m.text() == "&View").menu()
    assert {a.text() for a in view_menu.actions()} <= set(rows)


def test_strip_colours_follow_the_sessions_decisions_not_the_bare_probability(qtbot, window, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"s{i}.png"), head_image(64, 64, seed=i))
    cv2.imwrite(str(folder / "s3.png"), np.zeros((64, 64), np.uint8))  # no head in it
    _open(qtbot, window, [folder])
    s = window.session
    m = s.manifest
    s.manifest = replace(m, threshold=replace(m.threshold, threshold=0.0))  # every probability is over it
    blank = next(i for i, sl in enumerate(s.slices) if sl.path.name == "s3.png")
    assert s.verdicts[blank] is not None and not s.decision(blank).flagged
    assert window.strip.kinds[blank] == OUT_OF_SCOPE
    assert all(window.strip.kinds[i] == FLAGGED for i in range(4) if i != blank)
    grey = window.strip.grab().toImage()
    x = round(window.strip.x_for(blank))
    column = {grey.pixelColor(x, y).getRgb()[:3] for y in range(grey.height())}
    assert (140, 140, 140) in column and (235, 80, 70) not in column  # drawn grey, never red


def test_a_click_on_the_strip_shows_that_slice(qtbot, series6):
    w = series6
    x = round(w.strip.x_for(4))
    qtbot.mouseClick(w.strip, Qt.LeftButton, pos=QPoint(x, w.strip.height() // 2))
    assert w.session.current == 4 and w.strip.current == 4


def test_a_map_asked_for_as_the_next_series_starts_still_comes(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "study" / "t1", n=6, description="T1 axial")
    write_dicom_series(tmp_path / "study" / "t2", n=4, description="T2 axial")
    picked = []

    def shown_series_done(_complete):
        # The map of this slice is asked for while the first slice's may still be computed, just before the other
        # series' run starts: that start must not drop the request.
        s = window.session
        if window.triage.session is s and not picked:
            picked.append(len(s.slices) - 1)
            window.select_slice(picked[0])

    window.triage.runFinished.connect(shown_series_done)
    _open(qtbot, window, [tmp_path / "study"])
    qtbot.waitUntil(lambda: window.session.cam(picked[0]) is not None and window.views.cam_view.has_overlay,
                    timeout=30000)
