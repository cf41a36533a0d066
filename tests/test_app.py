"""The window driven through its real widgets, offscreen."""

from __future__ import annotations

import csv
import os
from dataclasses import replace

import cv2
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt

from brainmri_desktop.core.session import INPUT_VIEW, SLICE_VIEW, Threshold
from brainmri_desktop.ui.main_window import MainWindow
from brainmri_desktop.ui.slice_table import P_COLUMN

from .pdf_text import pdf_text
from .synthetic import head_image, write_dicom_series


@pytest.fixture
def window(qtbot, model_dir, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(models_dirs=[model_dir], settings=settings)
    qtbot.addWidget(w)
    w.bar.choose("tiny-cnn")
    w.show()
    return w


def _open_and_wait(qtbot, w, paths):
    w.open_paths(paths)
    qtbot.waitUntil(lambda: w.session is not None and w.session.complete and w.triage.infer_worker is None,
                    timeout=60000)


def _set_threshold(window, threshold: float) -> None:
    """Moves the model's main operating point, as another manifest would: the session decides again, nothing re-runs."""
    m = window.session.manifest
    window.session.manifest = replace(m, threshold=replace(m.threshold, threshold=threshold))


def test_open_series_shows_probabilities_flags_and_overlay(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=6, tumour_slices=(2, 3))
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    table = window.slice_list.table.model()
    assert table.rowCount() == 6
    shown = [table.index(r, P_COLUMN).data(Qt.DisplayRole) for r in range(6)]
    assert shown == [f"{window.session.results[r].probability:.3f}" for r in range(6)]
    text = window.result_panel.text.toPlainText()
    assert "Tumour probability" in text and "Grad-CAM not measured against tumour outlines" in text
    assert "(Youden's J, chosen on synthetic" in text and "youden_j" not in text
    qtbot.waitUntil(lambda: window.views.cam_view.has_overlay, timeout=30000)  # the map comes from a worker
    assert window.session.cam(0, SLICE_VIEW).shape == window.session.slices[0].shape
    assert window.strip.count == 6 and len(window.strip.probabilities) == 6


def test_the_model_computes_in_its_own_process_which_closes_with_the_window(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=4)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    engine = window.triage.engine
    assert engine.pid != os.getpid() and engine.id == "tiny-cnn"
    assert window.status_area.device.text() == engine.device  # where it computes, as the child said
    window.close()
    assert not engine._process.is_alive() and window.triage.engines == {}


def test_the_models_process_starts_while_the_study_loads(qtbot, window, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"garbage")  # nothing to triage: only the warm-up can start an engine
    window.open_paths([tmp_path])
    key = window.bar.entry.manifest.content_key
    qtbot.waitUntil(lambda: key in window.triage.engines, timeout=60000)
    assert window.triage.infer_worker is None and window.triage.engines[key].pid != os.getpid()


def test_next_flagged_slice_by_key(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=6)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    probs = sorted(r.probability for r in window.session.results.values())
    _set_threshold(window, probs[-3] - 1e-9)  # three flagged
    flagged = window.session.flagged()
    assert len(flagged) == 3
    start = flagged[1]
    window.select_slice(start)
    qtbot.keyClick(window, Qt.Key_N)
    assert window.session.current == flagged[2]
    qtbot.keyClick(window, Qt.Key_N)
    assert window.session.current == flagged[0]  # wraps round
    qtbot.keyClick(window, Qt.Key_P)
    assert window.session.current == flagged[2]


def test_threshold_choice_changes_decisions_without_running_again(qtbot, window, tmp_path):
    """tiny-cnn gives a large disc about 0.95 and a small one about 0.35: the small ones are flagged at the
    high-sensitivity point (0.2) only, in the session, the list's summary and the strip."""
    from brainmri_desktop.ui.triage_strip import FLAGGED

    large, small = [2, 5], [1, 4]
    write_dicom_series(tmp_path / "series", n=6, tumour_slices=large, small_tumour_slices=small)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    before = dict(window.session.results)
    assert window.session.flagged() == large and "2 of 6 slices flagged" in window.slice_list.summary.text()
    window.bar.point_combo.setCurrentIndex(window.bar.point_combo.findData(Threshold.HIGH_SENSITIVITY))
    assert window.triage.infer_worker is None and window.session.results == before
    assert window.session.point.threshold == pytest.approx(0.2)
    assert window.strip.threshold == pytest.approx(0.2)
    expected = {i for i, r in before.items() if r.probability >= 0.2}
    assert set(window.session.flagged()) == expected == set(large + small)
    assert "4 of 6 slices flagged" in window.slice_list.summary.text()
    assert sorted(i for i, kind in window.strip.kinds.items() if kind == FLAGGED) == sorted(large + small)
    assert "High-sensitivity" in window.bar.point_combo.currentText()
    window.bar.point_combo.setCurrentIndex(window.bar.point_combo.findData(Threshold.DEFAULT))
    assert window.session.flagged() == large and "2 of 6 slices flagged" in window.slice_list.summary.text()


def test_png_folder_with_broken_files_lists_them(qtbot, window, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"s{i}.png"), head_image(80, 70, seed=i))
    (folder / "broken.png").write_bytes(b"garbage")
    (folder / "empty.dcm").write_bytes(b"")
    _open_and_wait(qtbot, window, [folder])
    assert len(window.session.slices) == 3
    assert window.errors.count() == 2 and window.errors_dock.isVisible()


def test_change_model_reruns_and_cancel_stops(qtbot, window, tmp_path):
    n = 70  # three chunks of 32: a cancelled run cannot have finished them all
    write_dicom_series(tmp_path / "series", n=n, size=48)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    window.bar.choose("spot")
    qtbot.waitUntil(lambda: window.triage.infer_worker is None and window.triage.engine is not None
                    and window.triage.engine.id == "spot" and len(window.session.results) == n, timeout=60000)
    assert window.session.manifest.id == "spot"
    window.run_inference()
    window.cancel()
    assert window.status.text() == "Cancelled"
    qtbot.waitUntil(lambda: window.triage.infer_worker is None, timeout=60000)
    assert len(window.session.results) < n and not window.session.complete
    assert window.status.text().startswith(f"Stopped: {len(window.session.results)} of {n} slices")
    assert not window.status_area.progress.isVisible()


def test_model_input_maps_are_cached_not_recomputed_on_display_changes(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=4)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    window.bar.model_input.setChecked(True)
    qtbot.waitUntil(lambda: window.session.cam(0, INPUT_VIEW) is not None and window.triage.cam_worker is None,
                    timeout=30000)
    cached = window.session.cam(0, INPUT_VIEW)
    assert cached.shape == window.session.inputs[0].image.shape
    for value in (10, 80, 30):
        window.bar.opacity.setValue(value)
        assert window.triage.cam_worker is None  # shown from the cache: no worker started
    window.bar.overlay_toggle.setChecked(False)
    assert window.triage.cam_worker is None and window.session.cam(0, INPUT_VIEW) is cached


def test_export_and_review_marks_survive_reopening(qtbot, window, tmp_path, model_dir):
    write_dicom_series(tmp_path / "series", n=5)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    _set_threshold(window, min(r.probability for r in window.session.results.values()) - 1e-9)  # all flagged
    window.select_slice(2)
    window.result_panel.note.setText("looks like artefact")
    qtbot.keyClick(window, Qt.Key_D)
    window.export_csv(tmp_path / "out.csv")
    window.export_pdf(tmp_path / "out.pdf")
    assert window.triage.export_worker is not None  # the maps and the PDF are made in a worker
    qtbot.waitUntil(lambda: window.triage.export_worker is None, timeout=60000)
    assert window.status.text() == f"Saved {tmp_path / 'out.pdf'}"
    assert all(window.session.cam(i) is not None for i in range(5))  # the export's maps went to the cache
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert len(rows) == 5 and rows[2]["review"] == "disagree" and rows[2]["note"] == "looks like artefact"
    assert all(r["flagged"] == "1" for r in rows)
    text = pdf_text((tmp_path / "out.pdf").read_bytes())
    # matplotlib draws "fl" and "fi" as ligature glyphs of another font: phrases without them are searched
    assert "BrainMRI triage report" in text and ": 5 of 5; highest probability" in text and "(Youden's J" in text
    assert "reader: disagree" in text
    assert not any(p.suffix == ".json" for p in (tmp_path / "series").iterdir())  # nothing beside the DICOM files
    settings = QSettings(str(tmp_path / "settings2.ini"), QSettings.IniFormat)
    again = MainWindow(models_dirs=[model_dir], settings=settings)
    qtbot.addWidget(again)
    again.bar.choose("tiny-cnn")
    _open_and_wait(qtbot, again, [tmp_path / "series"])
    marks = again.session.marks
    assert marks[2].verdict == "disagree" and marks[2].note == "looks like artefact"


def _column(window, column: int) -> list:
    view = window.slice_list.table.model()
    return [view.index(row, column).data() for row in range(view.rowCount())]


def test_sorting_by_probability_and_flagged_only_filter(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=8, tumour_slices=(3, 4))
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    assert _column(window, 0) == list(range(1, 9))  # study order until the reader sorts
    header = window.slice_list.table.horizontalHeader()
    on_p = QPoint(header.sectionViewportPosition(2) + 5, header.height() // 2)
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=on_p)
    if header.sortIndicatorOrder() != Qt.DescendingOrder:
        qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=on_p)
    assert header.sortIndicatorSection() == 2
    probs = _column(window, 2)
    assert probs == sorted(probs, reverse=True)
    # The row the reader selects is the slice shown, whatever the order.
    results = window.session.results
    window.slice_list.table.selectRow(0)
    top = max(results, key=lambda i: results[i].probability)
    assert window.session.current == top
    _set_threshold(window, sorted(r.probability for r in results.values())[-3] - 1e-9)
    flagged_only = window.slice_list.flagged_only
    flagged_only.click()
    assert flagged_only.isChecked()
    shown = {n - 1 for n in _column(window, 0)}
    assert shown == {i for i, d in window.session.decisions().items() if d.flagged or d.second_look}
    assert len(shown) >= 3
    flagged_only.click()
    assert window.slice_list.table.model().rowCount() == 8


def test_export_to_an_unwritable_place_says_so_and_the_session_goes_on(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    write_dicom_series(tmp_path / "series", n=3)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    warnings = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(blocker / "report.pdf"), ""))
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: warnings.append(text))
    window.export_report_dialog()
    qtbot.waitUntil(lambda: window.triage.export_worker is None, timeout=60000)
    assert len(warnings) == 1 and "report.pdf could not be written" in warnings[0]
    assert blocker.read_text() == "not a folder"
    window.export_csv(tmp_path / "after.csv")  # the study is still open and exports elsewhere
    assert len(list(csv.DictReader(open(tmp_path / "after.csv")))) == 3


def test_a_first_start_opens_with_the_default_model_of_the_command_line(qtbot, model_dir, tmp_path):
    from brainmri_desktop.core.model_choice import find_model
    from brainmri_desktop.core.packages import discover

    w = MainWindow(models_dirs=[model_dir], settings=QSettings(str(tmp_path / "fresh.ini"), QSettings.IniFormat))
    qtbot.addWidget(w)
    assert w.bar.model_combo.count() >= 2
    assert w.bar.model_combo.currentData() == find_model(discover([model_dir]), None).manifest.id


def test_the_result_says_how_far_the_models_grad_cam_was_measured_to_point_at_tumours(model_dir):
    from dataclasses import replace

    from brainmri_desktop.core.packages import discover
    from brainmri_desktop.ui.result_panel import gradcam_note as _gradcam_note

    manifest = next(e.manifest for e in discover([model_dir]) if e.ok)
    cams = {"lgg-flair": {"n": 120, "pointing_game": 0.62}, "br35h": {"n": 70, "pointing_game": 0.74}}
    good = _gradcam_note(replace(manifest, metrics={"gradcam": cams}))
    assert "74% of 70 (br35h), 62% of 120 (lgg-flair)" in good and "does not show" not in good
    bad = _gradcam_note(replace(manifest, metrics={"gradcam": {**cams, "br35h": {"n": 70, "pointing_game": 0.1}}}))
    assert "10% of 70 (br35h)" in bad and "does not show where a tumour is" in bad


def test_out_of_scope_slices_are_greyed_with_their_reason_and_the_switch_flags_them(qtbot, window, tmp_path):
    import numpy as np
    from PySide6.QtGui import QAction

    from brainmri_desktop.ui.triage_strip import FLAGGED, OUT_OF_SCOPE

    folder = tmp_path / "pngs"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"head{k}.png"), head_image(70, 90, seed=k))
    cv2.imwrite(str(folder / "head3.png"), np.zeros((70, 90), np.uint8))  # blank: no head to read
    _open_and_wait(qtbot, window, [folder])
    s = window.session
    blank = next(i for i, sl in enumerate(s.slices) if sl.path.name == "head3.png")
    assert [i for i, v in s.verdicts.items() if v] == [blank]
    _set_threshold(window, 1e-6)  # every slice the model may flag is flagged
    model = window.slice_list.model
    assert model.data(model.index(blank, 1), Qt.ForegroundRole) is not None
    assert all(model.data(model.index(i, 1), Qt.ForegroundRole) is None for i in range(4) if i != blank)
    tip = model.data(model.index(blank, 2), Qt.ToolTipRole)
    assert "no head" in tip and "Not flagged" in tip
    summary = window.slice_list.summary.text()
    assert "3 of 4 slices flagged" in summary and "1 outside what the model was trained on (not flagged)" in summary
    assert window.strip.kinds[blank] == OUT_OF_SCOPE
    window.select_slice(blank)
    text = window.result_panel.text.toPlainText()
    assert "outside the model's scope: not flagged whatever its probability" in text and "no head" in text
    window.export_pdf(tmp_path / "gated.pdf")
    qtbot.waitUntil(lambda: window.triage.export_worker is None, timeout=60000)
    pdf = pdf_text((tmp_path / "gated.pdf").read_bytes())  # "fl" is a ligature in the PDF's text
    assert "Outside what the model was trained on: 1 slice (not" in pdf and "head3.png" not in pdf

    switch = window.findChild(QAction, "includeOutOfScope")
    assert switch.isCheckable() and not switch.isChecked()
    switch.trigger()
    assert switch.isChecked() and s.include_out_of_scope
    assert s.flagged() == [0, 1, 2, 3] and window.strip.kinds[blank] == FLAGGED
    assert "4 of 4 slices flagged" in window.slice_list.summary.text()
    assert "Not flagged" not in model.data(model.index(blank, 2), Qt.ToolTipRole)
    assert "included by its probability" in window.result_panel.text.toPlainText()
    window.export_csv(tmp_path / "table.csv")
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert "no head" in rows[blank]["out_of_scope"] and rows[blank]["flagged"] == "1"
    assert all(r["out_of_scope"] == "" for i, r in enumerate(rows) if i != blank)
    switch.trigger()
    assert not s.include_out_of_scope and blank not in s.flagged()


def test_triage_progress_paints_with_the_event_loop_not_at_once(window, qtbot):
    """QProgressBar.setValue repaints synchronously; under a busy engine thread that repaint waited for the GIL (a
    50 ms stall of the event loop in the bench). The status bar records the value and paints on the next pass."""
    from PySide6.QtCore import QEvent, QObject

    class Paints(QObject):
        count = 0

        def eventFilter(self, obj, event):
            self.count += event.type() == QEvent.Paint
            return False

    area = window.status_area
    area.start("Triage")
    qtbot.waitExposed(window)
    qtbot.wait(50)  # the paints of showing the bar are over before counting starts
    paints = Paints()
    area.progress.installEventFilter(paints)
    area.set_progress(37, 100)
    assert area.progress.value() == 37 and area.progress.maximum() == 100
    assert paints.count == 0
    qtbot.waitUntil(lambda: paints.count > 0, timeout=2000)


def test_a_study_given_at_start_loads_after_the_windows_first_paint(window, qtbot, tmp_path):
    """`brainmri-desktop STUDY` shows the window and opens the study: begun together, the window's first paint waited
    on the loading thread for the GIL (85 ms of the bench's longest stall). The load starts once the window has
    painted."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication

    write_dicom_series(tmp_path / "series", n=6)
    order = []

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Paint and "paint" not in order:
                order.append("paint")
            return False

    watch = FirstPaint()
    QApplication.instance().installEventFilter(watch)
    load = window.triage.load
    window.triage.load = lambda paths, entry=None: (order.append("load"), load(paths, entry))
    try:
        window.open_when_shown([tmp_path / "series"])
        assert order == []  # nothing before the event loop runs
        qtbot.waitUntil(lambda: window.session is not None and window.session.complete
                        and window.triage.infer_worker is None, timeout=60000)
    finally:
        QApplication.instance().removeEventFilter(watch)
    assert order == ["paint", "load"] and len(window.session.slices) == 6


def test_the_first_paint_is_seen_on_a_window_that_its_children_cover(qtbot, capfd):
    """The filter watches the window alone, whose own paint event opens the pass, not every widget's (a child may
    even keep a value named `window`, as WindowLevelBar does, which once made the filter raise)."""
    from PySide6.QtWidgets import QLabel, QMainWindow

    from brainmri_desktop.ui.first_paint import AfterFirstPaint

    class KeepsAWindowValue(QLabel):
        def __init__(self):
            super().__init__("level")
            self.window = None

    w = QMainWindow()
    w.setCentralWidget(KeepsAWindowValue())
    qtbot.addWidget(w)
    fired = []
    AfterFirstPaint(w, lambda: fired.append(True), at_most_ms=60000)
    w.show()
    qtbot.waitUntil(lambda: bool(fired), timeout=5000)
    assert "Error calling Python override" not in capfd.readouterr().err
