"""The main window: slice list, the slice and its Grad-CAM side by side, results, triage strip, review and export."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QFileDialog, QHBoxLayout,
                               QHeaderView, QInputDialog, QLabel, QLineEdit, QListWidget, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QSlider, QSpinBox, QSplitter, QTableView, QTextBrowser,
                               QToolBar, QVBoxLayout, QWidget)

from .. import __version__
from ..core import runtime
from ..core.demo import ensure_demo_study
from ..core.errors import BrainMRIError
from ..core.inference import SliceResult, find_model, gradcam_points_at_tumours, pointing_scores
from ..core.packages import discover, user_models_dir
from ..core.preprocess import Preprocessed
from ..core.report import DISCLAIMER, StudyReport, write_csv, write_pdf
from ..core.review import ReviewStore
from .image_view import ImageView
from .slice_table import FlaggedFilter, SliceTableModel
from .triage_strip import TriageStrip
from .workers import load_study, run_model, settle_heap


class MainWindow(QMainWindow):
    def __init__(self, models_dirs: list[Path] | None = None, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("BrainMRI", "BrainMRI")
        self.models_dirs = list(models_dirs or [])
        self.slices = []
        self.inputs: dict[int, Preprocessed] = {}
        self.results: dict[int, SliceResult] = {}
        self.cams: dict[int, np.ndarray] = {}
        self.loaded_models: dict = {}
        self.entries: dict = {}
        self.model = None
        self.reviews: ReviewStore | None = None
        self.current = -1
        self.window_level: tuple[float, float] | None = None
        self.load_worker = None
        self.infer_worker = None
        self._run_started = 0.0
        self._last_run_seconds = 0.0
        self._gradcam = None
        self._build_ui()
        self.refresh_models()
        self._model_watch = QTimer(self, interval=3000, timeout=self.refresh_models)
        self._model_watch.start()
        self._restore_settings()
        self.setAcceptDrops(True)
        settle_heap()

    # ---------------------------------------------------------------- layout
    def _build_ui(self) -> None:
        self.setWindowTitle("BrainMRI")
        self.resize(1400, 900)
        self.view = ImageView()
        self.cam_view = ImageView()
        for v, other in ((self.view, self.cam_view), (self.cam_view, self.view)):
            v.viewChanged.connect(other.set_view)
            v.windowDrag.connect(self._drag_window)
            v.cursorMoved.connect(self._cursor)
        self.view.setToolTip("The slice. Wheel: zoom, drag: pan, right-drag: window/level.")
        self.cam_view.setToolTip("The same slice with the Grad-CAM overlay: where the model's evidence lies.")
        views = QSplitter(Qt.Horizontal)
        for title, v in (("Image", self.view), ("Grad-CAM", self.cam_view)):
            box = QWidget()
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(QLabel(title))
            lay.addWidget(v)
            views.addWidget(box)
        self.strip = TriageStrip()
        self.strip.sliceClicked.connect(self.select_slice)
        centre = QSplitter(Qt.Vertical)
        centre.addWidget(views)
        centre.addWidget(self.strip)
        centre.setSizes([800, 90])
        self.setCentralWidget(centre)

        self.slice_model = SliceTableModel(self)
        self.slice_view = FlaggedFilter(self.slice_model, self)
        self.table = QTableView()
        self.table.setObjectName("sliceTable")
        self.table.setModel(self.slice_view)
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
        self.table.selectionModel().selectionChanged.connect(self._table_selection)
        self.flagged_only = QCheckBox("flagged only")
        self.flagged_only.toggled.connect(self.slice_view.set_flagged_only)
        self.summary = QLabel("No study open.")
        self.summary.setWordWrap(True)
        left = QWidget()
        lay = QVBoxLayout(left)
        lay.addWidget(self.summary)
        lay.addWidget(self.flagged_only)
        lay.addWidget(self.table)
        self._dock("Slices", "slicesDock", left, Qt.LeftDockWidgetArea)

        self.result_text = QTextBrowser()
        self.result_text.setObjectName("results")
        self.agree = QPushButton("Agree (A)")
        self.disagree = QPushButton("Disagree (D)")
        self.agree.clicked.connect(lambda: self.mark("agree"))
        self.disagree.clicked.connect(lambda: self.mark("disagree"))
        self.note = QLineEdit()
        self.note.setPlaceholderText("note for this slice (saved with the mark)")
        self.note.editingFinished.connect(self._save_note)
        right = QWidget()
        lay = QVBoxLayout(right)
        lay.addWidget(self.result_text)
        buttons = QHBoxLayout()
        buttons.addWidget(self.agree)
        buttons.addWidget(self.disagree)
        lay.addLayout(buttons)
        lay.addWidget(self.note)
        disclaimer = QLabel(DISCLAIMER)
        disclaimer.setWordWrap(True)
        disclaimer.setStyleSheet("color: #e0a060;")
        lay.addWidget(disclaimer)
        self._dock("Result", "resultDock", right, Qt.RightDockWidgetArea)

        self.errors = QListWidget()
        self.errors.setObjectName("errors")
        self.errors_dock = self._dock("Files not opened", "errorsDock", self.errors, Qt.RightDockWidgetArea)
        self.errors_dock.hide()

        bar = QToolBar("Model")
        bar.setObjectName("modelBar")
        self.addToolBar(bar)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Every model found: bundled, user-trained and given folders")
        self.model_combo.currentIndexChanged.connect(self._model_changed)
        self.point_combo = QComboBox()
        self.point_combo.addItems(["Youden's J threshold", "High-sensitivity threshold"])
        self.point_combo.currentIndexChanged.connect(self._point_changed)
        self.tta = QSpinBox()
        self.tta.setRange(1, 8)
        self.tta.setPrefix("TTA ")
        self.tta.setToolTip("Test-time augmentations (spent only on slices near the threshold)")
        self.overlay_toggle = QCheckBox("overlay")
        self.overlay_toggle.setChecked(True)
        self.overlay_toggle.toggled.connect(self._show_current)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setMaximumWidth(120)
        self.opacity.setToolTip("Overlay opacity (colour map: jet, blue = none, red = strongest evidence)")
        self.opacity.valueChanged.connect(self._show_current)
        self.model_input = QCheckBox("what the model saw")
        self.model_input.setToolTip("Show the exact model input: windowed, cropped, normalised and resized")
        self.model_input.toggled.connect(self._show_current)
        self.hide_identity = QCheckBox("hide patient")
        self.hide_identity.setChecked(True)
        self.hide_identity.toggled.connect(self._update_title)
        self.hide_identity.toggled.connect(self._show_current)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        for w in (QLabel(" Model "), self.model_combo, self.point_combo, self.tta, self.overlay_toggle,
                  QLabel(" opacity "), self.opacity, self.model_input, self.hide_identity):
            bar.addWidget(w)
        self.status = QLabel()
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)
        self.device_label = QLabel(runtime.device_description())
        self.statusBar().addPermanentWidget(self.device_label)
        self._build_menus()

    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        def action(menu, text, slot, shortcut=None, name=None):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if name:
                a.setObjectName(name)
            a.triggered.connect(slot)
            menu.addAction(a)
            self.addAction(a)
            return a

        m = self.menuBar().addMenu("&File")
        action(m, "Open files...", self.open_files_dialog, QKeySequence.Open)
        action(m, "Open folder / DICOM series...", self.open_folder_dialog, "Ctrl+Shift+O")
        self.recent_menu = m.addMenu("Recent studies")
        m.addSeparator()
        action(m, "Export report (PDF)...", self.export_report_dialog, "Ctrl+E")
        action(m, "Export table (CSV)...", self.export_csv_dialog, "Ctrl+Shift+E")
        m.addSeparator()
        action(m, "Quit", self.close, QKeySequence.Quit)
        m = self.menuBar().addMenu("&Review")
        action(m, "Next flagged slice", lambda: self.step_flagged(1), "N", "nextFlagged")
        action(m, "Previous flagged slice", lambda: self.step_flagged(-1), "P", "previousFlagged")
        action(m, "Agree", lambda: self.mark("agree"), "A")
        action(m, "Disagree", lambda: self.mark("disagree"), "D")
        action(m, "Fit image", lambda: (self.view.fit(), self.cam_view.fit()), "F")
        m = self.menuBar().addMenu("&Help")
        action(m, "Open demo study", self.open_demo, None, "openDemo")
        action(m, "Model card", self.show_model_card)
        action(m, "About BrainMRI", self.show_about)

    # -------------------------------------------------------------- settings
    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.tta.setValue(int(self.settings.value("tta", 0) or 0) or self.tta.value())
        self.opacity.setValue(int(self.settings.value("opacity", 45)))
        wanted = self.settings.value("model", "")
        index = self.model_combo.findData(wanted)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        self._update_recent()

    def closeEvent(self, event):
        self.cancel()
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("tta", self.tta.value())
        self.settings.setValue("opacity", self.opacity.value())
        self.settings.setValue("model", self.model_combo.currentData() or "")
        self.settings.sync()
        super().closeEvent(event)

    def _update_recent(self) -> None:
        self.recent_menu.clear()
        for path in list(self.settings.value("recent", []) or [])[:8]:
            a = self.recent_menu.addAction(path)
            a.triggered.connect(lambda _=False, p=path: self.open_paths([Path(p)]))

    def _remember(self, paths: list[Path]) -> None:
        recent = [str(p) for p in paths[:1]] + [r for r in (self.settings.value("recent", []) or [])
                                                if r not in {str(p) for p in paths[:1]}]
        self.settings.setValue("recent", recent[:8])
        self.settings.setValue("last_folder", str(paths[0].parent if paths[0].is_file() else paths[0]))
        self._update_recent()

    # ---------------------------------------------------------------- models
    def refresh_models(self) -> None:
        """Lists every usable package; called on a timer so that models exported by the trainer appear."""
        entries = [e for e in discover(self.models_dirs) if e.ok]
        ids = [e.manifest.id for e in entries]
        if ids == [self.model_combo.itemData(i) for i in range(self.model_combo.count())]:
            return
        current = self.model_combo.currentData()
        self.entries = {e.manifest.id: e for e in entries}
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for e in entries:
            self.model_combo.addItem(f"{e.manifest.name} [{e.source}]", e.manifest.id)
        index = self.model_combo.findData(current) if current else -1
        if index < 0 and entries:  # nothing chosen yet: the default of the command line too
            index = self.model_combo.findData(find_model(entries, None).manifest.id)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        if self.model_combo.currentData() != current:
            self._model_changed()

    @property
    def entry(self):
        return self.entries.get(self.model_combo.currentData())

    def _model_changed(self, *_):
        if self.entry and self.tta.value() == 1 and not self.settings.value("tta"):
            self.tta.setValue(self.entry.manifest.default_tta)
        self.run_inference()

    def _point_changed(self, *_) -> None:
        """A new operating point changes decisions, not probabilities: nothing re-runs."""
        if self.model is None:
            return
        threshold = self.model.manifest.operating_point(self.point_combo.currentIndex() == 1).threshold
        self.results = {i: replace(r, threshold=threshold) for i, r in self.results.items()}
        self._refresh_rows()
        self._show_current()

    # --------------------------------------------------------------- opening
    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images or DICOM files", self.settings.value("last_folder", ""),
                                                "Images and DICOM (*.dcm *.png *.jpg *.jpeg *.tif *.tiff *.bmp *);;All (*)")
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder or DICOM series", self.settings.value("last_folder", ""))
        if folder:
            self.open_paths([Path(folder)])

    def open_demo(self) -> None:
        self.open_paths([ensure_demo_study()])

    def dragEnterEvent(self, event):
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_paths(paths)

    def open_paths(self, paths: list[Path]) -> None:
        self.cancel()
        self._remember(paths)
        self.status.setText("Loading...")
        self._start_progress()
        worker = load_study(paths)
        worker.yielded.connect(lambda msg: self._set_progress(msg[1], msg[2]))
        worker.returned.connect(self._loaded)
        worker.errored.connect(lambda exc: self._failed(f"Loading failed: {exc}"))
        worker.finished.connect(self._stop_progress)
        self.load_worker = worker
        worker.start()

    def _loaded(self, report) -> None:
        self.load_worker = None
        self.errors.clear()
        for err in report.errors:
            self.errors.addItem(f"{err.path}: {err.reason}")
        self.errors_dock.setVisible(bool(report.errors))
        series = report.series
        if not series:
            self.status.setText("Nothing could be opened" + (" (see 'Files not opened')" if report.errors else ""))
            return
        chosen = series[0]
        if len(series) > 1:
            labels = [s.label for s in series]
            label, ok = QInputDialog.getItem(self, "Choose a series", "This folder holds several series:", labels, 0, False)
            if not ok:
                return
            chosen = series[labels.index(label)]
        self.set_study(chosen.slices)

    def set_study(self, slices) -> None:
        self.slices = list(slices)
        self.inputs, self.results, self.cams = {}, {}, {}
        self.window_level = None
        self.reviews = ReviewStore(self.slices)
        if self.reviews.load_error:
            self.errors.addItem(self.reviews.load_error)
            self.errors_dock.show()
        self.slice_model.set_study(self.slices, self.results, self.reviews.marks)
        self._update_title()
        self.select_slice(0)
        self.run_inference()

    def _update_title(self, *_):
        title = "BrainMRI"
        if self.slices:
            s = self.slices[0]
            title += f" - {s.series.description if s.series and s.series.description else s.path.parent.name}"
            if not self.hide_identity.isChecked() and s.patient.name:
                title += f" - {s.patient.name}"
        self.setWindowTitle(title)

    # ------------------------------------------------------------- inference
    def run_inference(self) -> None:
        if not self.slices or self.entry is None:
            return
        if self.infer_worker is not None:
            self.infer_worker.quit()
        self.results, self.cams, self._gradcam = {}, {}, None
        self._refresh_rows()
        self._start_progress()
        self._run_started = time.perf_counter()
        self.status.setText(f"Running {self.entry.manifest.name}...")
        worker = run_model(self.entry, self.slices, self.tta.value(), self.point_combo.currentIndex() == 1,
                           self.loaded_models)
        worker.yielded.connect(lambda msg, w=worker: self._inference_message(w, msg))
        worker.errored.connect(lambda exc: self._failed(f"The model could not run: {exc}"))
        worker.finished.connect(lambda w=worker: self._inference_finished(w))
        self.infer_worker = worker
        worker.start()

    def _inference_message(self, worker, msg) -> None:
        if worker is not self.infer_worker:
            return  # a run that was cancelled or replaced: its late results must not mix with the new ones
        kind = msg[0]
        if kind == "model":
            self.model, self._gradcam = msg[1], msg[2]
        elif kind == "inputs":
            for k, p in enumerate(msg[2]):
                self.inputs[msg[1] + k] = p
        elif kind == "results":
            for r in msg[1]:
                self.results[r.index] = r
            self._set_progress(len(self.results), len(self.slices))
            self._refresh_rows({r.index for r in msg[1]})
            if self.current in {r.index for r in msg[1]}:
                self._show_current()

    def _inference_finished(self, worker) -> None:
        if worker is not self.infer_worker:
            return
        self.infer_worker = None
        self._stop_progress()
        self._last_run_seconds = time.perf_counter() - self._run_started
        done = len(self.results) == len(self.slices)
        self.status.setText(("Done" if done else "Stopped") + f": {len(self.results)} of {len(self.slices)} slices "
                            f"in {self._last_run_seconds:.1f} s")
        self._show_current()

    def cancel(self) -> None:
        for worker in (self.load_worker, self.infer_worker):
            if worker is not None:
                worker.quit()
        if self.infer_worker is not None:
            self.status.setText("Cancelled")

    def _failed(self, text: str) -> None:
        self._stop_progress()
        self.status.setText(text)
        self.errors.addItem(text)
        self.errors_dock.show()

    def _start_progress(self) -> None:
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.show()

    def _set_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)

    def _stop_progress(self) -> None:
        if self.load_worker is None and self.infer_worker is None:
            self.progress.hide()
            self.cancel_button.hide()

    # ---------------------------------------------------------------- review
    def _refresh_rows(self, only: set[int] | None = None) -> None:
        """Shows the results and marks of the given slices (all when None), the summary and the strip."""
        self.slice_model.refresh(self.results, self.reviews.marks if self.reviews else {}, only)
        flagged = [i for i, r in self.results.items() if r.flagged]
        best = max((r.probability for r in self.results.values()), default=None)
        self.summary.setText(f"{len(flagged)} of {len(self.slices)} slices flagged"
                             + (f"; highest probability {best:.3f}" if best is not None else "")
                             + ("" if len(self.results) == len(self.slices) else f" ({len(self.results)} done)"))
        threshold = next(iter(self.results.values())).threshold if self.results else 0.5
        self.strip.set_data(len(self.slices), {i: r.probability for i, r in self.results.items()}, threshold,
                            self.current)

    def _table_selection(self, *_) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.select_slice(self.slice_view.slice_at(rows[0].row()))

    def select_slice(self, index: int) -> None:
        if not self.slices or not 0 <= index < len(self.slices):
            return
        self.current = index
        row = self.slice_view.row_of(index)
        if row >= 0 and self.table.currentIndex().row() != row:
            self.table.selectRow(row)
        mark = self.reviews.marks.get(index) if self.reviews else None
        self.note.setText(mark.note if mark else "")
        self._show_current()
        self.strip.set_data(self.strip.count, self.strip.probabilities, self.strip.threshold, index)

    def step_flagged(self, direction: int) -> None:
        flagged = sorted(i for i, r in self.results.items() if r.flagged)
        if not flagged:
            return
        if direction > 0:
            nxt = next((i for i in flagged if i > self.current), flagged[0])
        else:
            nxt = next((i for i in reversed(flagged) if i < self.current), flagged[-1])
        self.select_slice(nxt)

    def mark(self, verdict: str) -> None:
        if self.reviews is None or self.current < 0:
            return
        try:
            self.reviews.set(self.current, verdict, self.note.text())
        except OSError as exc:
            self._failed(f"The review mark could not be saved ({exc.strerror}); it is kept for this session only")
        self._refresh_rows()
        self._show_current()

    def _save_note(self) -> None:
        mark = self.reviews.marks.get(self.current) if self.reviews else None
        if mark and mark.note != self.note.text():
            self.mark(mark.verdict)

    # --------------------------------------------------------------- display
    def _display_unit(self, s) -> np.ndarray:
        if self.window_level is None:
            self.window_level = s.display_window()
        return s.display_image(self.window_level)

    def _drag_window(self, d_centre: float, d_width: float) -> None:
        if not self.slices or self.window_level is None:
            return
        v = self.slices[self.current].values()
        span = float(v.max() - v.min()) or 1.0
        c, w = self.window_level
        self.window_level = (c + d_centre * span, max(span * 1e-3, w + d_width * span))
        self._show_current()

    def _cursor(self, x: int, y: int) -> None:
        if x < 0 or not self.slices:
            return
        s = self.slices[self.current]
        if self.model_input.isChecked() or not (0 <= y < s.shape[0] and 0 <= x < s.shape[1]):
            return
        self.status.setText(f"x {x}, y {y}: value {s.values()[y, x]:.1f}")

    def current_cam(self, index: int) -> np.ndarray | None:
        if index in self.cams:
            return self.cams[index]
        if self._gradcam is None or index not in self.inputs or index not in self.results:
            return None
        self.cams[index] = self._gradcam.slice_maps([self.inputs[index]])[0]
        return self.cams[index]

    def _show_current(self, *_):
        if not self.slices or self.current < 0:
            return
        i, s = self.current, self.slices[self.current]
        r = self.results.get(i)
        if self.model_input.isChecked() and i in self.inputs:
            unit = self.inputs[i].image
            cam = None
            if r is not None and self._gradcam is not None:
                cam = self._gradcam.input_maps(unit[None])[0]
        else:
            unit = self._display_unit(s)
            cam = self.current_cam(i) if r is not None else None
        self.view.set_image(unit)
        self.cam_view.set_image(unit)
        self.cam_view.set_overlay(cam, self.opacity.value() / 100)
        self.cam_view.set_overlay_visible(self.overlay_toggle.isChecked())
        self.result_text.setHtml(self._result_html(i, s, r))

    def _result_html(self, i, s, r) -> str:
        m = self.model.manifest if self.model else None
        rows = [f"<h3>Slice {i + 1} of {len(self.slices)}</h3><p>{s.label}</p>"]
        if not self.hide_identity.isChecked() and s.patient.name:
            rows.append(f"<p>Patient: {s.patient.name} ({s.patient.patient_id})</p>")
        if r is None or m is None:
            rows.append("<p><i>waiting for the model...</i></p>")
            return "".join(rows)
        point = m.operating_point(self.point_combo.currentIndex() == 1)
        if r.second_look:
            decision = "<b style='color:#e0c040'>needs a second look</b> (augmentations disagree)"
        elif r.flagged:
            decision = "<b style='color:#ff6050'>flagged</b>"
        else:
            decision = "<b style='color:#60d080'>not flagged</b>"
        if r.no_head:
            decision += " - <i>no head found in this slice</i>"
        perf = ""
        if point.sensitivity is not None and point.specificity is not None:
            perf = f"; at this point the trainer measured sensitivity {point.sensitivity:.2f}, specificity {point.specificity:.2f}"
        mark = self.reviews.marks.get(i) if self.reviews else None
        rows += [
            f"<p>Tumour probability: <b>{r.probability:.3f}</b> "
            f"(range {r.p_low:.3f}-{r.p_high:.3f} over {r.augmentations} view{'s' if r.augmentations > 1 else ''})</p>",
            f"<p>Threshold: {point.threshold:.3f} ({point.method}, chosen on {point.data}{perf})</p>",
            f"<p>Decision: {decision}</p>",
            f"<p>Model: {m.name} (id {m.id}, version {m.version}); {self.device_label.text()}; "
            f"last run {self._last_run_seconds:.1f} s</p>",
            f"<p>{_gradcam_note(m)}</p>",
            f"<p>Reader: {mark.verdict if mark else 'not reviewed'}</p>",
        ]
        return "".join(rows)

    # ----------------------------------------------------------------- export
    def report(self) -> StudyReport:
        return StudyReport(self.slices, dict(self.results), self.model.manifest,
                           "high_sensitivity" if self.point_combo.currentIndex() == 1 else "youden_j",
                           dict(self.reviews.marks) if self.reviews else {}, self.device_label.text(),
                           include_identity=not self.hide_identity.isChecked())

    def export_pdf(self, path: Path) -> None:
        write_pdf(self.report(), path, self.current_cam)

    def export_csv(self, path: Path) -> None:
        write_csv(self.report(), path)

    def _export(self, title: str, pattern: str, suffix: str, fn) -> None:
        if self.model is None or not self.results:
            QMessageBox.information(self, title, "Open a study and let the model finish first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, title, str(Path(self.settings.value("last_folder", "")) /
                                                              f"brainmri-report{suffix}"), pattern)
        if path:
            try:
                fn(Path(path))
                self.status.setText(f"Saved {path}")
            except (OSError, BrainMRIError) as exc:
                QMessageBox.warning(self, title, f"{path} could not be written: {getattr(exc, 'strerror', None) or exc}")

    def export_report_dialog(self) -> None:
        self._export("Export report", "PDF (*.pdf)", ".pdf", self.export_pdf)

    def export_csv_dialog(self) -> None:
        self._export("Export table", "CSV (*.csv)", ".csv", self.export_csv)

    # ------------------------------------------------------------------ help
    def show_model_card(self) -> None:
        entry = self.entry
        if entry is None:
            return
        card = entry.path / "MODEL_CARD.md"
        text = card.read_text(encoding="utf-8") if card.exists() else entry.manifest.to_json()
        box = QMessageBox(self)
        box.setWindowTitle(f"Model card: {entry.manifest.name}")
        box.setText(f"{entry.manifest.name} ({entry.manifest.id})")
        box.setDetailedText(text)
        box.show()

    def show_about(self) -> None:
        models = "<br>".join(f"{e.manifest.name}: {e.manifest.id} v{e.manifest.version} ({e.source})"
                             for e in self.entries.values())
        from ..selftest import build_commit

        QMessageBox.about(self, "About BrainMRI", f"<h3>BrainMRI {__version__} ({build_commit()})</h3><p>{DISCLAIMER}</p>"
                                                  f"<p>Models:<br>{models or 'none found'}</p>"
                                                  f"<p>User models folder: {user_models_dir()}</p>")


def _gradcam_note(manifest) -> str:
    """What the trainer measured about this model's Grad-CAM, so that the reader knows how far to trust the map."""
    cams = pointing_scores(manifest.metrics)
    if not cams:
        return "Grad-CAM: not measured against tumour outlines; read it as what drove the score, not as a location."
    shares = ", ".join(f"{v['pointing_game']:.0%} of {v.get('n', '?')} ({k})" for k, v in cams.items())
    note = f"Grad-CAM: its peak lay inside the tumour on {shares} outlined validation slices"
    if gradcam_points_at_tumours(manifest):
        return note + "."
    return note + (" - <b style='color:#e0c040'>for this model the map does not show where a tumour is</b>; "
                   "read it as what drove the score.")
