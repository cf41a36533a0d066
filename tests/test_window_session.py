"""The window around the core's session model, driven through its real widgets offscreen: the recent-studies menu,
the status line and the Grad-CAM overlay across series and cine, and the command line's first lines."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QFileDialog

from brainmri_desktop.core.io.slices import SeriesInfo, Slice
from brainmri_desktop.core.session import Threshold
from brainmri_desktop.ui.main_window import MainWindow
from brainmri_desktop.ui.viewing import BRAIN

from .synthetic import write_dicom_series


def _window(qtbot, model_dir, ini):
    w = MainWindow(models_dirs=[model_dir], settings=QSettings(str(ini), QSettings.IniFormat))
    qtbot.addWidget(w)
    w.bar.choose("tiny-cnn")
    w.show()
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=2000)
    return w


@pytest.fixture
def window(qtbot, model_dir, tmp_path):
    return _window(qtbot, model_dir, tmp_path / "settings.ini")


def _open(qtbot, w, paths):
    w.open_paths(paths)
    qtbot.waitUntil(lambda: w.session is not None and w.triage.infer_worker is None
                    and all(s.complete for s in w.study.sessions.values()), timeout=60000)


def test_recent_studies_lists_whole_paths_after_a_restart(qtbot, model_dir, tmp_path):
    write_dicom_series(tmp_path / "series", n=3)
    # What an earlier run left: Qt writes a one-item list as a bare value, and another process reads it as a string.
    (tmp_path / "settings.ini").write_text(f"[General]\nrecent={tmp_path / 'old'}\n")
    w = _window(qtbot, model_dir, tmp_path / "settings.ini")
    assert [a.text() for a in w.recent.menu.actions()] == [str(tmp_path / "old")]
    _open(qtbot, w, [tmp_path / "series"])
    assert [a.text() for a in w.recent.menu.actions()] == [str(tmp_path / "series"), str(tmp_path / "old")]


def test_switching_series_does_not_keep_the_other_series_done_line(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "study" / "t1", n=6, description="T1 axial")
    write_dicom_series(tmp_path / "study" / "t2", n=4, description="T2 axial")
    _open(qtbot, window, [tmp_path / "study"])
    uids = {s.slices[0].series.description: uid for uid, s in window.study.sessions.items()}
    window.browser.select_series(uids["T1 axial"])
    window.browser.select_series(uids["T2 axial"])
    assert window.status.text() == "T2 axial (MR): 4 of 4 slices triaged"
    window.browser.select_series(uids["T1 axial"])
    assert window.status.text() == "T1 axial (MR): 6 of 6 slices triaged"


def test_cine_keeps_the_grad_cam_overlay(qtbot, window, tmp_path, monkeypatch):
    write_dicom_series(tmp_path / "series", n=24)
    _open(qtbot, window, [tmp_path / "series"])
    cam_view = window.views.cam_view
    qtbot.waitUntil(lambda: cam_view.has_overlay, timeout=30000)
    gradcam = window.triage.engine
    slice_maps = gradcam.slice_maps

    def slow_maps(inputs):  # each call as slow as a real model's first layers on a CPU
        time.sleep(0.15)
        return slice_maps(inputs)

    monkeypatch.setattr(gradcam, "slice_maps", slow_maps)
    window.tools.cine_bar.speed.setValue(30)
    shown = []  # connected after the window: read once the frame is drawn
    window.tools.sliceRequested.connect(lambda i: shown.append((i, cam_view.has_overlay)))
    window.tools.cine.start()
    qtbot.waitUntil(lambda: len(shown) >= 48, timeout=20000)
    window.tools.cine.stop()
    # The first pass may wait for maps still being computed; on the second every frame has its map.
    assert all(overlay for _i, overlay in shown[24:48]), shown


def test_predict_on_an_empty_folder_says_why_in_one_line(model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "brainmri_desktop.cli", "predict", "--models-dir", str(model_dir),
                           str(tmp_path / "empty")], capture_output=True, text=True, timeout=300)
    # No TensorFlow start-up lines before it: the one line is all of stderr.
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: nothing to triage in {tmp_path / 'empty'}: "
                                        "no image, DICOM or NIfTI file found"]


def test_the_brain_preset_finds_the_head_past_a_few_hot_pixels(window):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    head = (yy - 64) ** 2 + (xx - 64) ** 2 < 45 ** 2
    pixels = np.where(head, rng.integers(640, 1120, (128, 128)), 0).astype(np.uint16)
    pixels[:3, :3] = 65535  # burnt-in text in a corner, outside the head
    bar = window.tools.window_bar
    bar.set_slice(Slice(Path("hot.dcm"), pixels, series=SeriesInfo("1.2.3", modality="MR")))
    bar.apply_preset(BRAIN)
    centre, width = bar.window
    # Scaled by its minimum and maximum, the slice's head was too dark to find and the hot corner was taken for it:
    # the window must span the head's tissue (640-1120), not the corner.
    assert centre - width / 2 <= 640 and 1100 < centre + width / 2 < 1200


def test_the_open_files_filter_names_everything_the_loader_reads(window, monkeypatch, tmp_path):
    asked = {}

    def dialog(_parent, _title, _folder, filters):
        asked["filters"] = filters
        return [], ""

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", dialog)
    window.open_files_dialog()
    first = asked["filters"].split(";;")[0]
    for pattern in ("*.dcm", "*.dicom", "*.ima", "*.png", "*.tiff", "*.nii", "*.nii.gz", "*.zip", "DICOMDIR"):
        assert pattern in first.split("(")[1].rstrip(")").split()


def _two_series(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "study" / "t1", n=6, description="T1 axial")
    write_dicom_series(tmp_path / "study" / "t2", n=4, description="T2 axial")
    _open(qtbot, window, [tmp_path / "study"])
    return {s.slices[0].series.description: s for s in window.study.sessions.values()}


def test_the_operating_point_is_the_studys_for_every_series_and_the_next_load(qtbot, window, tmp_path):
    series = _two_series(qtbot, window, tmp_path)
    bar = window.bar
    bar.point_combo.setCurrentIndex(bar.point_combo.findData(Threshold.HIGH_SENSITIVITY))
    window.set_include_out_of_scope(True)
    # The series not shown is decided as the shown one at once (its flags reach the PDF, the SR and the strip).
    assert all(s.threshold is Threshold.HIGH_SENSITIVITY and s.include_out_of_scope for s in series.values())
    write_dicom_series(tmp_path / "other", n=3)
    _open(qtbot, window, [tmp_path / "other"])
    assert window.session.threshold is Threshold.HIGH_SENSITIVITY and window.session.include_out_of_scope
    assert window.session is window.study.session


def test_the_window_follows_changes_made_on_the_session(qtbot, window, tmp_path):
    write_dicom_series(tmp_path / "series", n=6)
    _open(qtbot, window, [tmp_path / "series"])
    s, table = window.session, window.slice_list.model
    s.mark(2, "disagree", "", "dr test")  # as a controller or a script would: on the model, not through the window
    assert "disagree" in table.index(2, 3).data()
    window.select_slice(2)
    s.mark(2, None)
    assert "disagree" not in table.index(2, 3).data()
    assert "disagree" not in window.result_panel.text.toPlainText().lower()
    probabilities = sorted(r.probability for r in s.results.values())
    s.manifest = replace(s.manifest, threshold=replace(s.manifest.threshold, threshold=probabilities[-2] - 1e-9))
    assert len(s.flagged()) == 2 and window.slice_list.summary.text().startswith("2 ")
    assert window.strip.threshold == s.point.threshold


def test_a_user_model_says_so_and_is_not_taken_up_silently_at_start(qtbot, model_dir, tmp_path):
    ini = tmp_path / "restart.ini"
    first = _window(qtbot, model_dir, ini)
    label = first.bar.model_combo.currentText()
    assert "[user model, " in label and "validation AUC" in label  # not a name a bundled model could also have
    first.close()
    again = MainWindow(models_dirs=[model_dir], settings=QSettings(str(ini), QSettings.IniFormat))
    qtbot.addWidget(again)
    assert again.bar.model_combo.currentData() == "tiny-cnn"
    assert again.status.text().startswith("Model as at the last session: ") and label in again.status.text()
