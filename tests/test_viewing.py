"""The reading tools driven through their real widgets, offscreen: wheel and keys, zoom, pan, window/level presets and
entry, invert/flip/rotate, the mm and patient-coordinate readout, the ruler, cine and the shortcut list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from brainmri_desktop.core.demo import head_image
from brainmri_desktop.core.geometry import PixelGeometry
from brainmri_desktop.core.io.slices import Acquisition, SeriesInfo, Slice
from brainmri_desktop.ui.cine import CineBar, CineController
from brainmri_desktop.ui.image_view import ImageView, Orientation
from brainmri_desktop.ui.reading import ReadingTools
from brainmri_desktop.ui.shortcuts import ShortcutsDialog, ViewingActions, shortcut_rows
from brainmri_desktop.ui.viewing import BRAIN, CT_BRAIN, FULL, HEADER, PixelReadout, SeriesMemory, WindowLevelBar

H, W = 40, 60  # not square, so that turns and flips show


def _slice(spacing=(0.5, 0.8), window=(1000.0, 2200.0), modality="MR", patient=True, seed=0) -> Slice:
    pixels = head_image(H, W, seed=seed, dtype=np.uint16, scale=8)
    acq = Acquisition(orientation=(1, 0, 0, 0, 1, 0), image_position=(-120.0, -130.0, 40.0)) if patient else None
    return Slice(Path(f"s{seed}.dcm"), pixels, window=window, pixel_spacing=spacing,
                 series=SeriesInfo("1.2.3", modality=modality), acquisition=acq)


def _gradient() -> np.ndarray:
    return np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))


@pytest.fixture
def view(qtbot):
    v = ImageView()
    qtbot.addWidget(v)
    v.resize(300, 200)
    v.show()
    v.set_image(_gradient())
    return v


@pytest.fixture
def pair(qtbot):
    views = []
    for _ in range(2):
        v = ImageView()
        qtbot.addWidget(v)
        v.resize(300, 200)
        v.show()
        v.set_image(_gradient())
        views.append(v)
    a, b = views
    a.viewChanged.connect(b.set_view)
    b.viewChanged.connect(a.set_view)
    return a, b


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


def _wheel(view, delta: int, modifiers=Qt.NoModifier):
    pos = QPointF(view.viewport().rect().center())
    event = QWheelEvent(pos, view.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta), Qt.NoButton,
                        modifiers, Qt.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def _mouse(view, kind, pos: QPoint, button=Qt.NoButton, buttons=Qt.NoButton):
    local = QPointF(pos)
    event = QMouseEvent(kind, local, view.viewport().mapToGlobal(local), button, buttons, Qt.NoModifier)
    QApplication.sendEvent(view.viewport(), event)


def _drag(view, start: QPoint, end: QPoint, button):
    _mouse(view, QEvent.MouseButtonPress, start, button, button)
    for t in (0.5, 1.0):
        _mouse(view, QEvent.MouseMove, start + (end - start) * t, Qt.NoButton, button)
    _mouse(view, QEvent.MouseButtonRelease, end, button, Qt.NoButton)


def _pixel_under(view, scene_point: QPointF) -> tuple[int, int]:
    seen = []
    view.cursorMoved.connect(lambda x, y: seen.append((x, y)))
    _mouse(view, QEvent.MouseMove, view.mapFromScene(scene_point))
    return seen[-1]


# ----------------------------------------------------------------- wheel, zoom, pan
def test_wheel_scrolls_slices_and_does_not_zoom(view):
    steps = []
    view.step.connect(steps.append)
    zoom = view.zoom
    _wheel(view, -120)
    _wheel(view, -240)
    assert steps == [1, 2] and view.zoom == zoom


def test_wheel_away_goes_back_and_small_touchpad_deltas_add_up(view):
    steps = []
    view.step.connect(steps.append)
    _wheel(view, 60)
    assert steps == []
    _wheel(view, 60)
    assert steps == [-1]


def test_ctrl_wheel_zooms_and_the_linked_view_follows(pair):
    a, b = pair
    steps = []
    a.step.connect(steps.append)
    before = a.zoom
    _wheel(a, 120, Qt.ControlModifier)
    assert a.zoom == pytest.approx(before * 1.2) and b.zoom == pytest.approx(a.zoom) and steps == []
    _wheel(a, -240, Qt.ControlModifier)
    assert a.zoom == pytest.approx(before / 1.2) and b.zoom == pytest.approx(a.zoom)


def test_middle_drag_zooms_in_when_dragged_up(pair):
    a, b = pair
    before = a.zoom
    _drag(a, QPoint(150, 150), QPoint(150, 100), Qt.MiddleButton)
    assert a.zoom == pytest.approx(before * 1.01 ** 50) and b.zoom == pytest.approx(a.zoom)


def test_left_drag_pans_both_views(pair):
    a, b = pair
    a.zoom_by(4)
    centre = a.mapToScene(a.viewport().rect().center())
    _drag(a, QPoint(150, 100), QPoint(110, 100), Qt.LeftButton)
    moved = a.mapToScene(a.viewport().rect().center())
    # Dragging the image 40 screen pixels to the left shows what lies 40 / zoom image pixels to its right.
    assert moved.x() == pytest.approx(centre.x() + 40 / a.zoom, abs=0.1)
    assert b.mapToScene(b.viewport().rect().center()).x() == pytest.approx(moved.x(), abs=1)


def test_right_drag_sets_window_through_the_bar(view, qtbot, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    s = _slice()
    bar.set_slice(s)
    view.windowDrag.connect(bar.drag)
    c, w = bar.window
    _drag(view, QPoint(100, 100), QPoint(140, 60), Qt.RightButton)
    span = float(s.values().max() - s.values().min())
    assert bar.window == pytest.approx((c + 40 / 400 * span, w + 40 / 400 * span))


# --------------------------------------------------------- invert, flip, rotate
def test_invert_shows_the_negative(view):
    assert view.shown_image().pixelColor(W - 1, 0).value() == 255
    view.set_inverted(True)
    assert view.shown_image().pixelColor(W - 1, 0).value() == 0
    assert view.shown_image().pixelColor(0, 0).value() == 255


def test_flip_left_right_puts_the_last_column_on_the_left(view):
    view.set_orientation(Orientation().flipped_horizontally())
    assert _pixel_under(view, QPointF(0.5, 0.5)) == (W - 1, 0)


def test_flip_up_down_puts_the_last_row_on_top(view):
    view.set_orientation(Orientation().flipped_vertically())
    assert _pixel_under(view, QPointF(0.5, 0.5)) == (0, H - 1)


def test_rotate_clockwise_puts_the_bottom_left_pixel_on_the_top_left(view):
    view.set_orientation(Orientation().rotated(1))
    assert view.sceneRect().size().toTuple() == (H, W)
    assert _pixel_under(view, QPointF(0.5, 0.5)) == (0, H - 1)


def test_flips_and_turns_compose_like_the_screen():
    o = Orientation()
    assert o.flipped_horizontally().flipped_horizontally() == o
    assert o.flipped_horizontally().flipped_vertically() == o.rotated(2)
    assert o.rotated(1).rotated(3) == o
    # A left-right flip after a quarter turn mirrors the screen, not the stored image.
    assert o.rotated(1).flipped_horizontally() == Orientation(3, True)


def test_view_state_comes_back(view):
    view.set_inverted(True)
    view.set_orientation(Orientation(1, True))
    view.zoom_by(3)
    state = view.view_state()
    view.set_inverted(False)
    view.set_orientation(Orientation())
    view.fit()
    view.restore_state(state)
    assert view.view_state().inverted and view.orientation == Orientation(1, True)
    assert view.zoom == pytest.approx(state.zoom)


# -------------------------------------------------------------------- keys
def _activate(qtbot, widget):
    # Window shortcuts fire only in the active window.
    widget.show()
    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget, timeout=2000)


@pytest.fixture
def host(qtbot, pair, settings):
    widget = QWidget()
    qtbot.addWidget(widget)
    bar = WindowLevelBar(settings)
    cine = CineController(widget)
    actions = ViewingActions(widget, pair, bar, cine)
    _activate(qtbot, widget)
    return widget, actions, bar, cine


def test_arrow_and_page_keys_step_and_home_end_jump(qtbot, host):
    widget, actions, _bar, _cine = host
    steps, jumps = [], []
    actions.step.connect(steps.append)
    actions.goTo.connect(jumps.append)
    for key in (Qt.Key_Down, Qt.Key_Up, Qt.Key_PageDown, Qt.Key_PageUp, Qt.Key_Home, Qt.Key_End):
        qtbot.keyClick(widget, key)
    assert steps == [1, -1, 10, -10] and jumps == [0, -1]


def test_keys_invert_flip_and_rotate_both_views(qtbot, host, pair):
    widget = host[0]
    qtbot.keyClick(widget, Qt.Key_I)
    qtbot.keyClick(widget, Qt.Key_R)
    qtbot.keyClick(widget, Qt.Key_H)
    for v in pair:
        assert v.inverted and v.orientation == Orientation().rotated(1).flipped_horizontally()
    qtbot.keyClick(widget, Qt.Key_0, Qt.ControlModifier)
    for v in pair:
        assert not v.inverted and v.orientation == Orientation()


def test_space_plays_and_stops_cine(qtbot, host):
    widget, _actions, _bar, cine = host
    cine.set_position(0, 5)
    qtbot.keyClick(widget, Qt.Key_Space)
    assert cine.running
    qtbot.keyClick(widget, Qt.Key_Space)
    assert not cine.running


def test_viewing_shortcuts_do_not_clash(host):
    keys = [a.shortcut().toString() for a in host[1].actions]
    assert len(keys) == len(set(keys)) and all(keys)


def test_shortcut_list_is_read_from_the_window_actions(qtbot, host):
    widget = host[0]
    extra = QAction("&Agree", widget)
    extra.setShortcut(QKeySequence("A"))
    widget.addAction(extra)
    rows = shortcut_rows(widget)
    assert ("A", "Agree") in rows and ("Space", "Play / stop cine") in rows and ("Ctrl+Wheel", "Zoom") in rows
    dialog = ShortcutsDialog(widget)
    qtbot.addWidget(dialog)
    assert dialog.table.rowCount() == len(rows)
    texts = {dialog.table.item(r, 1).text() for r in range(dialog.table.rowCount())}
    assert "Flip left-right" in texts and "Agree" in texts


# ------------------------------------------------------------- window/level
def test_presets_header_full_range_and_brain(qtbot, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    s = _slice()
    bar.set_slice(s)
    names = [bar.presets.itemText(i) for i in range(bar.presets.count())]
    assert names[:3] == [HEADER, FULL, BRAIN]
    assert bar.window == (1000.0, 2200.0)
    bar.presets.textActivated.emit(FULL)
    v = s.values()
    assert bar.window == pytest.approx(((v.min() + v.max()) / 2, v.max() - v.min()))
    assert (bar.centre_spin.value(), bar.width_spin.value()) == pytest.approx(bar.window, abs=0.01)


def test_brain_preset_is_the_ct_brain_window_for_ct_and_the_head_range_for_mr(qtbot, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    bar.set_slice(_slice(modality="CT"))
    bar.apply_preset(BRAIN)
    assert bar.window == CT_BRAIN
    mr = _slice(window=None)
    mr.pixels[H // 2, W // 2 - 2:W // 2 + 2] = 60000  # a few very bright pixels (a vessel, say) inside the head
    bar.set_slice(mr)
    bar.apply_preset(BRAIN)
    centre, width = bar.window
    # The head's tissue is 80-140 (x 8): the brain window spans it and is not stretched by the bright pixels,
    # which the full range is.
    assert centre - width / 2 < 8 * 80 and 8 * 130 <= centre + width / 2 < 8 * 150
    bar.apply_preset(FULL)
    assert bar.window[1] > 50000


def test_a_slice_without_a_header_window_has_no_header_preset(qtbot, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    bar.set_slice(_slice(window=None))
    assert bar.presets.findText(HEADER) == -1 and bar.presets.findText(FULL) >= 0


def test_user_presets_persist_in_settings_and_can_be_deleted(qtbot, tmp_path):
    path = str(tmp_path / "presets.ini")
    first = WindowLevelBar(QSettings(path, QSettings.IniFormat))
    qtbot.addWidget(first)
    first.set_slice(_slice())
    first.set_window(700, 300)
    first.save_preset("my T1")
    first.settings.sync()
    second = WindowLevelBar(QSettings(path, QSettings.IniFormat))
    qtbot.addWidget(second)
    second.set_slice(_slice())
    assert second.presets.findText("my T1") >= 0
    second.apply_preset("my T1")
    assert second.window == (700.0, 300.0)
    second.delete_preset("my T1")
    assert second.presets.findText("my T1") == -1 and "my T1" not in second.user_presets()


def test_damaged_preset_setting_loses_presets_not_the_window(qtbot, settings):
    settings.setValue("viewing/window_presets", "{not json")
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    bar.set_slice(_slice())
    assert bar.user_presets() == {} and bar.window == (1000.0, 2200.0)


def test_numeric_entry_sets_the_window(qtbot, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    bar.show()
    bar.set_slice(_slice())
    seen = []
    bar.windowChanged.connect(lambda c, w: seen.append((c, w)))
    bar.centre_spin.lineEdit().selectAll()
    qtbot.keyClicks(bar.centre_spin.lineEdit(), "412.5")
    qtbot.keyClick(bar.centre_spin.lineEdit(), Qt.Key_Return)
    assert seen == [(412.5, 2200.0)] and bar.window == (412.5, 2200.0)


def test_reset_returns_to_the_file_window_and_the_window_stays_across_slices(qtbot, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    bar.set_slice(_slice())
    bar.drag(0.1, 0.2)
    dragged = bar.window
    assert dragged != (1000.0, 2200.0)
    bar.set_slice(_slice(seed=1))
    assert bar.window == dragged
    bar.reset_button.click()
    assert bar.window == (1000.0, 2200.0)
    bar.drag(0.1, 0.0)
    bar.set_slice(_slice(seed=2, window=(50.0, 100.0)), reset=True)
    assert bar.window == (50.0, 100.0)


def test_w_key_resets_the_window(qtbot, host):
    widget, _actions, bar, _cine = host
    bar.set_slice(_slice())
    bar.set_window(5, 5)
    qtbot.keyClick(widget, Qt.Key_W)
    assert bar.window == (1000.0, 2200.0)


# ------------------------------------------------------------ readout, ruler
def test_readout_gives_mm_and_patient_coordinates_under_the_cursor(qtbot, view):
    readout = PixelReadout()
    qtbot.addWidget(readout)
    s = _slice()
    view.set_image(s.display_image())
    readout.set_slice(s)
    view.cursorMoved.connect(readout.show_pixel)
    assert _pixel_under(view, QPointF(10.5, 20.5)) == (10, 20)
    # By hand: x = -120 + 10 * 0.8, y = -130 + 20 * 0.5, z = 40 (LPS: negative x is right, negative y anterior).
    assert "8.0, 10.0 mm" in readout.text() and "R 112.0 A 120.0 S 40.0 mm" in readout.text()
    _mouse(view, QEvent.MouseMove, view.mapFromScene(QPointF(-5, -5)))
    assert readout.text() == ""


def test_readout_for_an_image_without_spacing_gives_pixels_only(qtbot, view):
    readout = PixelReadout()
    qtbot.addWidget(readout)
    readout.set_slice(_slice(spacing=None, patient=False))
    view.cursorMoved.connect(readout.show_pixel)
    _pixel_under(view, QPointF(3.5, 4.5))
    assert readout.text().startswith("x 3, y 4") and "pixel coordinates only" in readout.text()


def _measure(view, start: QPointF, end: QPointF):
    view.set_view(4.0, QPointF(W / 2, H / 2))
    got = []
    view.measured.connect(got.append)
    _drag(view, view.mapFromScene(start), view.mapFromScene(end), Qt.LeftButton)
    return got


def test_ruler_measures_in_mm_with_anisotropic_spacing(view):
    view.set_geometry(PixelGeometry.of(_slice()))
    view.set_ruler_tool(True)
    got = _measure(view, QPointF(20.5, 15.5), QPointF(40.5, 25.5))
    assert len(got) == 1 and len(view.measurements) == 1
    line = view.measurements[0].line()
    dx, dy = line.dx(), line.dy()
    assert dx == pytest.approx(20, abs=0.3) and dy == pytest.approx(10, abs=0.3)
    # 20 columns of 0.8 mm and 10 rows of 0.5 mm: about 16.8 mm, not the 22.4 of the pixel grid.
    assert got[0].unit == "mm" and got[0].value == pytest.approx(np.hypot(dx * 0.8, dy * 0.5))
    assert got[0].value == pytest.approx(np.hypot(16, 5), abs=0.3)
    assert view.measurements[0].label == f"{got[0].value:.1f} mm"


def test_ruler_without_spacing_measures_pixels_and_says_so(view):
    view.set_geometry(None)
    view.set_ruler_tool(True)
    got = _measure(view, QPointF(10.5, 10.5), QPointF(10.5, 30.5))
    assert got[0].unit == "px" and got[0].value == pytest.approx(20, abs=0.3)
    assert view.measurements[0].label.endswith("px (no pixel spacing)")


def test_a_click_with_the_ruler_leaves_no_ruler(view):
    view.set_ruler_tool(True)
    got = _measure(view, QPointF(10.5, 10.5), QPointF(10.5, 10.5))
    assert got == [] and view.measurements == []


def test_rulers_are_cleared_by_another_slice_and_do_not_pan(view):
    view.set_geometry(PixelGeometry.of(_slice()))
    view.set_ruler_tool(True)
    view.set_view(4.0, QPointF(W / 2, H / 2))
    centre = view.mapToScene(view.viewport().rect().center())
    _drag(view, QPoint(100, 100), QPoint(60, 80), Qt.LeftButton)
    assert view.mapToScene(view.viewport().rect().center()) == centre
    assert len(view.measurements) == 1
    view.set_geometry(PixelGeometry.of(_slice()))  # the same slice drawn again (a new window, say)
    assert len(view.measurements) == 1
    view.set_geometry(PixelGeometry.of(_slice()), key=1)  # a PNG series: same geometry, another slice
    assert view.measurements == [] and len(view.scene().items()) == 2  # the image and its overlay


# ---------------------------------------------------------------------- cine
def test_cine_advances_wraps_and_stops(qtbot):
    cine = CineController(fps=30)
    frames = []
    cine.frame.connect(frames.append)
    cine.set_position(2, 4)
    cine.start()
    qtbot.waitUntil(lambda: len(frames) >= 4, timeout=3000)
    cine.stop()
    assert frames[:4] == [3, 0, 1, 2]
    count = len(frames)
    qtbot.wait(200)
    assert len(frames) == count and not cine.running


def test_cine_bar_sets_speed_and_follows_the_controller(qtbot):
    cine = CineController()
    bar = CineBar(cine)
    qtbot.addWidget(bar)
    bar.speed.setValue(20)
    assert cine.fps == 20
    cine.set_position(0, 3)
    bar.play.click()
    assert cine.running and bar.play.isChecked()
    cine.set_position(0, 1)  # a one-slice series: nothing to play
    assert not cine.running and not bar.play.isChecked()
    bar.play.click()
    assert not cine.running


def test_each_series_keeps_its_slice_view_and_window(qtbot, pair, settings):
    bar = WindowLevelBar(settings)
    qtbot.addWidget(bar)
    memory = SeriesMemory()
    bar.set_slice(_slice(), reset=True)
    for v in pair:
        v.set_orientation(Orientation(1, False))
        v.set_inverted(True)
    pair[0].zoom_by(2)
    bar.set_window(300, 50)
    zoom = pair[0].zoom
    memory.save("series-a", 7, pair, bar)
    # Another series: a fresh window and view.
    bar.set_slice(_slice(window=(10.0, 20.0)), reset=True)
    for v in pair:
        v.set_orientation(Orientation())
        v.set_inverted(False)
        v.fit()
    assert memory.index_of("series-b") is None and not memory.restore("series-b", pair, bar)
    # Back to the first: its slice, orientation, inversion, zoom and window come back.
    assert memory.index_of("series-a") == 7
    bar.set_slice(_slice(), reset=True)
    assert memory.restore("series-a", pair, bar)
    assert bar.window == (300.0, 50.0)
    for v in pair:
        assert v.orientation == Orientation(1, False) and v.inverted and v.zoom == pytest.approx(zoom)


def _yellow_pixels(view) -> int:
    image = view.grab().toImage()
    return sum(1 for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)
               if image.pixelColor(x, y).red() - image.pixelColor(x, y).blue() > 100)


def test_orientation_letters_follow_flips_and_turns(view):
    assert view.edge_labels() == {}  # no orientation header: no letters rather than made-up ones
    assert _yellow_pixels(view) == 0
    view.set_geometry(PixelGeometry.of(_slice()))
    assert view.edge_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    view.set_orientation(Orientation().flipped_horizontally())
    assert view.edge_labels() == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    view.set_orientation(Orientation().rotated(1))
    # Turned clockwise: what was on the left (R) is now at the top, the top (A) on the right.
    assert view.edge_labels() == {"left": "P", "right": "A", "top": "R", "bottom": "L"}
    assert _yellow_pixels(view) > 0  # the letters are painted


def test_f1_opens_the_shortcut_list_built_at_that_moment(qtbot, host, monkeypatch):
    from brainmri_desktop.ui import shortcuts

    widget = host[0]
    shortcuts.help_action(widget)
    opened = []
    monkeypatch.setattr(shortcuts.ShortcutsDialog, "exec", lambda self: opened.append(self) or 0)
    late = QAction("Added later", widget)
    late.setShortcut(QKeySequence("Ctrl+K"))
    widget.addAction(late)
    qtbot.keyClick(widget, Qt.Key_F1)
    assert len(opened) == 1
    texts = [opened[0].table.item(r, 1).text() for r in range(opened[0].table.rowCount())]
    assert "Added later" in texts and "Keyboard and mouse shortcuts" in texts


def test_arrow_keys_step_a_focused_number_box_and_slices_elsewhere(qtbot, settings):
    widget = QWidget()
    qtbot.addWidget(widget)
    bar, view = WindowLevelBar(settings), ImageView()
    layout = QVBoxLayout(widget)
    layout.addWidget(bar)
    layout.addWidget(view)
    actions = ViewingActions(widget, [view], bar)
    steps = []
    actions.step.connect(steps.append)
    _activate(qtbot, widget)
    bar.set_slice(_slice())
    qtbot.keyClick(bar.centre_spin, Qt.Key_Up)
    assert steps == [] and bar.window == (1001.0, 2200.0)
    qtbot.keyClick(widget, Qt.Key_Up)  # the same key anywhere else in the window
    assert steps == [-1]


# ------------------------------------------------------- wired to a window
# The reading tools wired to a small stand-in window (a series, two linked views, the slice shown by index), the way
# the main window wires them; cine in the real window is tested in test_window_reading.py.
def _named_series(uid: str, n: int, window=(1000.0, 2200.0)) -> list[Slice]:
    return [Slice(Path(f"{uid}-{i}.dcm"), head_image(40, 60, seed=i, dtype=np.uint16, scale=8), window=window,
                  pixel_spacing=(0.5, 0.8), series=SeriesInfo(uid),
                  acquisition=Acquisition((1, 0, 0, 0, 1, 0), (0.0, 0.0, 5.0 * i))) for i in range(n)]


class Reader(QWidget):
    """What a window does: show slice i of the current series with the tools' window, tell the tools."""

    def __init__(self, settings: QSettings):
        super().__init__()
        self.view, self.cam_view = ImageView(), ImageView()
        self.view.viewChanged.connect(self.cam_view.set_view)
        self.cam_view.viewChanged.connect(self.view.set_view)
        self.tools = ReadingTools(self, (self.view, self.cam_view), settings)
        layout = QVBoxLayout(self)
        for w in (self.tools.window_bar, self.tools.cine_bar, self.view, self.cam_view, self.tools.readout):
            layout.addWidget(w)
        self.tools.sliceRequested.connect(self.select_slice)
        self.tools.window_bar.windowChanged.connect(lambda *_: self.show_current())
        self.series = {"A": _named_series("A", 6), "B": _named_series("B", 3, window=(50.0, 100.0))}
        self.uid, self.current = "", -1

    def open_series(self, uid: str) -> None:
        if self.uid:
            self.tools.leave_series(self.uid)
        self.uid = uid
        self.select_slice(self.tools.enter_series(uid, self.series[uid][0]))
        self.tools.restore_series(uid)

    def select_slice(self, index: int) -> None:
        self.current = index
        s = self.series[self.uid][index]
        self.tools.slice_shown(index, len(self.series[self.uid]), s)
        self.show_current()

    def show_current(self) -> None:
        s = self.series[self.uid][self.current]
        for v in (self.view, self.cam_view):
            v.set_image(s.display_image(self.tools.window))


@pytest.fixture
def reader(qtbot, tmp_path):
    r = Reader(QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat))
    qtbot.addWidget(r)
    r.resize(500, 700)
    r.show()
    r.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is r, timeout=2000)
    r.open_series("A")
    return r


def test_wheel_and_keys_scroll_and_stop_at_the_ends(qtbot, reader):
    _wheel(reader.view, -120)
    _wheel(reader.cam_view, -240)
    assert reader.current == 3
    qtbot.keyClick(reader, Qt.Key_PageDown)
    assert reader.current == 5  # stops at the last slice
    qtbot.keyClick(reader, Qt.Key_Home)
    assert reader.current == 0
    qtbot.keyClick(reader, Qt.Key_Up)
    assert reader.current == 0
    qtbot.keyClick(reader, Qt.Key_End)
    assert reader.current == 5


def test_right_drag_redraws_with_the_new_window(qtbot, reader):
    before = reader.view.shown_image().pixelColor(30, 20).value()
    centre = reader.view.viewport().rect().center()
    _drag(reader.view, centre, centre + QPoint(0, -80), Qt.RightButton)
    assert reader.tools.window[0] > 1000.0  # dragging up raises the centre: the tissue turns darker
    assert reader.view.shown_image().pixelColor(30, 20).value() < before


def test_readout_follows_the_slice_shown(qtbot, reader):
    qtbot.keyClick(reader, Qt.Key_Down)
    assert _pixel_under(reader.view, QPointF(10.5, 20.5)) == (10, 20)
    # Slice 1 lies at z = 5 mm; column 10 at 0.8 mm, row 20 at 0.5 mm from the first pixel.
    assert "L 8.0 P 10.0 S 5.0 mm" in reader.tools.readout.text()


def test_each_series_comes_back_as_it_was_left(qtbot, reader):
    qtbot.keyClick(reader, Qt.Key_Down)
    qtbot.keyClick(reader, Qt.Key_Down)
    qtbot.keyClick(reader, Qt.Key_R)
    reader.tools.window_bar.set_window(500, 300)
    reader.open_series("B")
    assert reader.current == 0 and reader.tools.window == (50.0, 100.0)
    assert reader.view.orientation == Orientation()  # a new series starts upright
    reader.open_series("A")
    assert reader.current == 2 and reader.tools.window == (500.0, 300.0)
    assert reader.view.orientation == Orientation().rotated(1) == reader.cam_view.orientation


def test_overlay_colours_are_matplotlibs_jet():
    from matplotlib import colormaps

    from brainmri_desktop.ui.image_view import jet_lut

    expected = (colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    assert np.array_equal(jet_lut(), expected)
