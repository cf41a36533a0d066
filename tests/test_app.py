"""The window driven through its real widgets, offscreen."""

from __future__ import annotations

import csv

import cv2
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt

from brainmri_desktop.ui.main_window import MainWindow

from .synthetic import head_image, write_dicom_series


@pytest.fixture
def window(qtbot, model_dir, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(models_dirs=[model_dir], settings=settings)
    qtbot.addWidget(w)
    index = w.model_combo.findData("tiny-cnn")
    w.model_combo.setCurrentIndex(index)
    w.show()
    return w


def _open_and_wait(qtbot, w, paths):
    w.open_paths(paths)
    qtbot.waitUntil(lambda: bool(w.slices) and len(w.results) == len(w.slices) and w.infer_worker is None, timeout=60000)


def test_open_series_shows_probabilities_flags_and_overlay(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=6, tumour_slices=(2, 3))
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    table = window.table.model()
    assert table.rowCount() == 6
    probs = [table.index(r, 2).data(Qt.DisplayRole) for r in range(6)]
    assert all(p is not None and 0 <= p <= 1 for p in probs)
    assert "Tumour probability" in window.result_text.toPlainText()
    assert "Grad-CAM: not measured against tumour outlines" in window.result_text.toPlainText()
    assert window.cam_view.has_overlay
    assert window.strip.count == 6 and len(window.strip.probabilities) == 6


def test_next_flagged_slice_by_key(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=6)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    threshold = min(r.probability for r in window.results.values()) + 1e-6
    window.results = {i: r.__class__(**{**r.__dict__, "threshold": threshold}) for i, r in window.results.items()}
    flagged = sorted(i for i, r in window.results.items() if r.flagged)
    assert flagged
    window.select_slice(0)
    qtbot.keyClick(window, Qt.Key_N)
    assert window.current == next(i for i in flagged if i > 0) if any(i > 0 for i in flagged) else flagged[0]


def test_png_folder_with_broken_files_lists_them(qtbot, window, tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"s{i}.png"), head_image(80, 70, seed=i))
    (folder / "broken.png").write_bytes(b"garbage")
    (folder / "empty.dcm").write_bytes(b"")
    _open_and_wait(qtbot, window, [folder])
    assert len(window.slices) == 3
    assert window.errors.count() == 2 and window.errors_dock.isVisible()


def test_change_model_reruns_and_cancel_stops(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=8)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    window.model_combo.setCurrentIndex(window.model_combo.findData("spot"))
    qtbot.waitUntil(lambda: window.infer_worker is None and window.model is not None
                    and window.model.id == "spot" and len(window.results) == 8, timeout=60000)
    window.run_inference()
    window.cancel()
    qtbot.waitUntil(lambda: window.infer_worker is None, timeout=60000)
    assert window.status.text().startswith(("Stopped", "Done", "Cancelled"))


def test_export_and_review_marks_survive_reopening(qtbot, window, tmp_path, model_dir):
    write_dicom_series(tmp_path / "series", n=5)
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    window.select_slice(2)
    window.note.setText("looks like artefact")
    qtbot.keyClick(window, Qt.Key_D)
    window.export_csv(tmp_path / "out.csv")
    window.export_pdf(tmp_path / "out.pdf")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert len(rows) == 5 and rows[2]["review"] == "disagree" and rows[2]["note"] == "looks like artefact"
    assert (tmp_path / "out.pdf").read_bytes()[:5] == b"%PDF-"
    assert not any(p.suffix == ".json" for p in (tmp_path / "series").iterdir())  # nothing beside the DICOM files
    settings = QSettings(str(tmp_path / "settings2.ini"), QSettings.IniFormat)
    again = MainWindow(models_dirs=[model_dir], settings=settings)
    qtbot.addWidget(again)
    again.model_combo.setCurrentIndex(again.model_combo.findData("tiny-cnn"))
    _open_and_wait(qtbot, again, [tmp_path / "series"])
    assert again.reviews.marks[2].verdict == "disagree" and again.reviews.marks[2].note == "looks like artefact"


def _column(window, column: int) -> list:
    view = window.table.model()
    return [view.index(row, column).data() for row in range(view.rowCount())]


def test_sorting_by_probability_and_flagged_only_filter(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=8, tumour_slices=(3, 4))
    _open_and_wait(qtbot, window, [tmp_path / "series"])
    assert _column(window, 0) == list(range(1, 9))  # study order until the reader sorts
    header = window.table.horizontalHeader()
    on_p = QPoint(header.sectionViewportPosition(2) + 5, header.height() // 2)
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=on_p)
    if header.sortIndicatorOrder() != Qt.DescendingOrder:
        qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=on_p)
    assert header.sortIndicatorSection() == 2
    probs = _column(window, 2)
    assert probs == sorted(probs, reverse=True)
    # The row the reader selects is the slice shown, whatever the order.
    window.table.selectRow(0)
    top = max(window.results, key=lambda i: window.results[i].probability)
    assert window.current == top
    threshold = sorted(r.probability for r in window.results.values())[-3] - 1e-9
    window.results = {i: r.__class__(**{**r.__dict__, "threshold": threshold}) for i, r in window.results.items()}
    window._refresh_rows()
    window.flagged_only.click()
    assert window.flagged_only.isChecked()
    shown = {n - 1 for n in _column(window, 0)}
    assert shown == {i for i, r in window.results.items() if r.flagged or r.second_look}
    assert len(shown) >= 3
    window.flagged_only.click()
    assert window.table.model().rowCount() == 8


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
    assert len(warnings) == 1 and "report.pdf could not be written" in warnings[0]
    assert blocker.read_text() == "not a folder"
    window.export_csv(tmp_path / "after.csv")  # the study is still open and exports elsewhere
    assert len(list(csv.DictReader(open(tmp_path / "after.csv")))) == 3


def test_a_first_start_opens_with_the_default_model_of_the_command_line(qtbot, model_dir, tmp_path):
    from brainmri_desktop.core.inference import find_model
    from brainmri_desktop.core.packages import discover

    w = MainWindow(models_dirs=[model_dir], settings=QSettings(str(tmp_path / "fresh.ini"), QSettings.IniFormat))
    qtbot.addWidget(w)
    assert w.model_combo.count() >= 2
    assert w.model_combo.currentData() == find_model(discover([model_dir]), None).manifest.id


def test_the_result_says_how_far_the_models_grad_cam_was_measured_to_point_at_tumours(model_dir):
    from dataclasses import replace

    from brainmri_desktop.core.packages import discover
    from brainmri_desktop.ui.main_window import _gradcam_note

    manifest = next(e.manifest for e in discover([model_dir]) if e.ok)
    cams = {"lgg-flair": {"n": 120, "pointing_game": 0.62}, "br35h": {"n": 70, "pointing_game": 0.74}}
    good = _gradcam_note(replace(manifest, metrics={"gradcam": cams}))
    assert "74% of 70 (br35h), 62% of 120 (lgg-flair)" in good and "does not show" not in good
    bad = _gradcam_note(replace(manifest, metrics={"gradcam": {**cams, "br35h": {"n": 70, "pointing_game": 0.1}}}))
    assert "10% of 70 (br35h)" in bad and "does not show where a tumour is" in bad
