"""The main window: puts the slice list, the two image views, the triage strip, the result panel and the tool bar
around the series' session, and routes the reader's actions to the session or the triage controller.

The session (core.session) holds the state; the controller (triage_controller) runs the background work; the
widgets only show. A `Study` keeps one session per series opened from the same load.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QFileDialog, QListWidget, QMainWindow, QMessageBox, QSplitter, QWidget

from ..core.demo import ensure_demo_study
from ..core.io import OPENABLE_PATTERNS
from ..core.model_choice import display_name
from ..core.packages import PackageCache, discover
from ..core.report import StudyReport, write_csv
from ..core.review import ReviewStore
from ..core.session import INPUT_VIEW, SLICE_VIEW, Session, Study, Threshold
from .first_paint import AfterFirstPaint
from .menus import build_menus
from .model_bar import ModelBar
from .pacs_controller import PacsController
from .reading import ReadingTools
from .result_panel import ResultPanel, reader_name
from .slice_table import SliceList
from .slice_views import SliceViews
from .status_area import StatusArea
from .series_switch import SeriesSwitch, series_name
from .study_browser import StudyBrowser
from .triage_controller import TriageController
from .triage_strip import TriageStrip
from .workers import settle_heap

MODEL_POLL_MS = 3000  # models exported by the trainer appear within this; a poll only stats the package files


class MainWindow(QMainWindow):
    def __init__(self, models_dirs: list[Path] | None = None, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("BrainMRI", "BrainMRI")
        self.models_dirs = list(models_dirs or [])
        self.study = Study()  # its Policy holds the reader's threshold and out-of-scope switch for every series
        self.triage = TriageController(self)
        self.pacs = PacsController(self)  # File > Open from PACS, Send results to PACS
        self._packages = PackageCache()
        self._build_ui()
        self._connect()
        self.refresh_models()
        self._model_watch = QTimer(self, interval=MODEL_POLL_MS, timeout=self.refresh_models)
        self._model_watch.start()
        self._restore_settings()
        self.setAcceptDrops(True)
        settle_heap()

    @property
    def session(self) -> Session | None:
        """The series shown: the study's active session."""
        return self.study.session

    # ---------------------------------------------------------------- layout
    def _build_ui(self) -> None:
        self.setWindowTitle("BrainMRI")
        self.resize(1400, 900)
        self.views = SliceViews()
        self.strip = TriageStrip()
        centre = QSplitter(Qt.Vertical)
        centre.addWidget(self.views)
        centre.addWidget(self.strip)
        centre.setSizes([800, 90])
        self.setCentralWidget(centre)
        self.browser = StudyBrowser()
        self.browser_dock = self._dock("Study", "studyDock", self.browser, Qt.LeftDockWidgetArea)
        self.slice_list = SliceList()
        self._dock("Slices", "slicesDock", self.slice_list, Qt.LeftDockWidgetArea)
        self.result_panel = ResultPanel()
        self._dock("Result", "resultDock", self.result_panel, Qt.RightDockWidgetArea)
        self.errors = QListWidget()
        self.errors.setObjectName("errors")
        self.errors_dock = self._dock("Files not opened", "errorsDock", self.errors, Qt.RightDockWidgetArea)
        self.errors_dock.hide()
        self.bar = ModelBar()
        self.addToolBar(self.bar)
        self.tools = ReadingTools(self, self.views.views, self.settings)
        self.status_area = StatusArea(self.statusBar())
        self.status = self.status_area.status
        self.tools.install(self)
        self.recent = build_menus(self)

    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect(self) -> None:
        self.study.policy.threshold = self.bar.threshold
        self.series = SeriesSwitch(self)  # the study browser's series, each a session of self.study
        self.show_series = self.series.show
        self.tools.sliceRequested.connect(self.select_slice)
        self.tools.window_bar.windowChanged.connect(self._show_current)
        self.tools.cine.runningChanged.connect(self._cine_running)
        self.browser.set_patient_hidden(self.bar.hide_identity.isChecked())
        self.bar.hide_identity.toggled.connect(self.browser.set_patient_hidden)
        self.bar.model_input.toggled.connect(self._announce_slice)
        self.strip.sliceClicked.connect(self.select_slice)
        self.slice_list.sliceChosen.connect(self.select_slice)
        self.result_panel.marked.connect(self.mark)
        self.result_panel.noteEdited.connect(self._save_note)
        self.result_panel.cleared.connect(lambda: self.mark(None))
        self.bar.modelChanged.connect(self._model_changed)
        self.bar.thresholdChanged.connect(self._threshold_changed)
        self.bar.displayChanged.connect(self._show_current)
        self.bar.hide_identity.toggled.connect(self.update_title)
        self.bar.hide_identity.toggled.connect(self._show_current)
        self.status_area.cancel_button.clicked.connect(self.cancel)
        t = self.triage
        t.progress.connect(self.status_area.set_progress)
        t.loaded.connect(self._loaded)
        t.runFinished.connect(self._run_finished)
        t.failed.connect(self.show_failure)
        t.deviceChanged.connect(self.status_area.device.setText)
        t.exported.connect(lambda path: self.status.setText(f"Saved {path}"))
        t.exportFailed.connect(lambda text: QMessageBox.warning(self, "Export report", text))

    # -------------------------------------------------------------- settings
    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        self.bar.tta.setValue(int(self.settings.value("tta", 0) or 0) or self.bar.tta.value())
        self.bar.opacity.setValue(int(self.settings.value("opacity", 45)))
        self.bar.choose(self.settings.value("model", ""))
        restored = self.bar.entries.get(self.bar.model_combo.currentData())
        if restored is not None and restored.source != "bundled":
            # a user model chosen in an earlier session is never taken up silently
            self.status.setText(f"Model as at the last session: {display_name(restored)}; choose another in the "
                                "Model box")

    def closeEvent(self, event):
        self.result_panel.commit_note()
        self.triage.shutdown()
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("tta", self.bar.tta.value())
        self.settings.setValue("opacity", self.bar.opacity.value())
        self.settings.setValue("model", self.bar.model_combo.currentData() or "")
        self.settings.sync()
        super().closeEvent(event)

    # ---------------------------------------------------------------- models
    def refresh_models(self) -> None:
        """Lists every usable package; polled so that models exported by the trainer appear. The package cache
        verifies a package again only when one of its files changed size or modification time."""
        if self.bar.set_entries(discover(self.models_dirs, cache=self._packages)):
            self._model_changed()

    def _model_changed(self) -> None:
        entry = self.bar.entry
        if entry and self.bar.tta.value() == 1 and not self.settings.value("tta"):
            self.bar.tta.setValue(entry.manifest.default_tta)
        self.run_inference()

    def _threshold_changed(self, threshold: Threshold) -> None:
        """A new operating point changes decisions, not probabilities: nothing re-runs."""
        self.study.policy.threshold = threshold

    def set_include_out_of_scope(self, on: bool) -> None:
        """Slices outside the model's scope flagged by their probability too, or not (the default): decisions
        change, nothing re-runs."""
        self.study.policy.include_out_of_scope = on

    def watch(self, session: Session) -> None:
        """Shows what changes in the session whenever it is the one shown (a series triaged in the background is
        shown when the reader switches to it)."""
        session.changed.connect(lambda rows: self._session_changed(session, rows))
        session.cams_changed.connect(lambda keys: self._cams_changed(session, keys))

    def _session_changed(self, session: Session, rows: set[int] | None) -> None:
        if session is self.session:
            self._refresh_rows(rows)
            if rows is None or session.current in rows:
                self._show_current()

    def _cams_changed(self, session: Session, keys: set) -> None:
        if session is self.session and any(i == session.current for i, _view in keys):
            self._show_current()

    # --------------------------------------------------------------- opening
    def open_files_dialog(self) -> None:
        readable = f"Images, DICOM, NIfTI and zip archives ({' '.join(OPENABLE_PATTERNS)})"
        files, _ = QFileDialog.getOpenFileNames(self, "Open images or DICOM files", self.settings.value("last_folder", ""),
                                                f"{readable};;All files, DICOM without a suffix too (*)")
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

    def open_when_shown(self, paths: list[Path]) -> None:
        """Opens a study given as the window starts (the command line) once the window has painted: begun together,
        that first paint (about 20 ms of the UI thread) waited on the loading thread for the GIL and took 85 ms."""
        AfterFirstPaint(self, lambda: self.open_paths(paths))

    def open_paths(self, paths: list[Path]) -> None:
        self.recent.remember(paths)
        self.status_area.start("Loading...")
        self.triage.load(paths, self.bar.entry)

    def _loaded(self, report, reviews: list[ReviewStore]) -> None:
        self._stop_progress()
        self.errors.clear()
        for err in report.errors:
            self.errors.addItem(f"{err.path}: {err.reason}")
        self.errors_dock.setVisible(bool(report.errors))
        series = report.series
        if not series:
            self.status.setText("Nothing could be opened" + (" (see 'Files not opened')" if report.errors else ""))
            return
        self.series.open([(item.info.uid, item.slices, store) for item, store in zip(series, reviews)])

    def update_title(self, *_):
        title = "BrainMRI"
        if self.session is not None and self.session.slices:
            s = self.session.slices[0]
            title += f" - {s.series.description if s.series and s.series.description else s.path.parent.name}"
            if not self.bar.hide_identity.isChecked() and s.patient.name:
                title += f" - {s.patient.name}"
        self.setWindowTitle(title)

    # ------------------------------------------------------------- inference
    def run_inference(self) -> None:
        """Triages the series shown, then the study's other series in the background (see TriageController.run)."""
        entry = self.bar.entry
        if self.session is None or not self.session.slices or entry is None:
            return
        self.triage.run(self.session, entry, self.bar.tta.value(), self.study)

    def _run_finished(self, complete: bool) -> None:
        self._stop_progress()
        s = self.triage.session
        which = f" ({series_name(s)})" if len(self.study.sessions) > 1 else ""
        self.status.setText(("Done" if complete else "Stopped") + f": {len(s.results)} of {len(s.slices)} slices "
                            f"in {self.triage.last_run_seconds:.1f} s" + which)
        if s is self.session:
            self._show_current()

    def cancel(self) -> None:
        if self.triage.cancel():
            self.status.setText("Cancelled")

    def show_failure(self, text: str) -> None:
        self._stop_progress()
        self.status.setText(text)
        self.errors.addItem(text)
        self.errors_dock.show()

    def _stop_progress(self) -> None:
        if not self.triage.busy:
            self.status_area.stop()

    # ---------------------------------------------------------------- review
    def _refresh_rows(self, only: set[int] | None = None) -> None:
        """Shows the results, decisions and marks of the given slices (all when None), the summary and the strip."""
        s = self.session
        if s is None:
            return
        self.slice_list.show_session(s, only)
        self.strip.show_session(s, only)

    def select_slice(self, index: int) -> None:
        s = self.session
        if s is None or not 0 <= index < len(s.slices):
            return
        s.current = index
        self.slice_list.select(index)
        self.result_panel.show_note(s, index)  # saves a note typed for the slice shown before
        self._announce_slice()
        self._show_current()
        self.strip.set_current(index)

    def _announce_slice(self, *_) -> None:
        """Tells the reading tools which slice is shown, and whether on its own grid (not the model input): the
        readout and the ruler work in the slice's mm."""
        s = self.session
        if s is not None and s.current >= 0:
            own = not (self.bar.model_input.isChecked() and s.current in s.inputs)
            self.tools.slice_shown(s.current, len(s.slices), s.slices[s.current], own_pixels=own)

    def step_flagged(self, direction: int) -> None:
        if self.session is not None and (index := self.session.step_flagged(direction)) is not None:
            self.select_slice(index)

    def mark(self, verdict: str | None) -> None:
        """Marks the current slice with the note as typed, the reader and the time; None clears its mark and note."""
        s = self.session
        if s is None or s.current < 0:
            return
        self.result_panel.commit_note()
        i, note = s.current, self.result_panel.note.text()
        self._review(s, i, lambda: s.mark(i, verdict, note, reader_name(self.settings)))
        self.result_panel.show_note(s, i)

    def _save_note(self, session: Session, index: int, note: str) -> None:
        self._review(session, index, lambda: session.note(index, note, reader_name(self.settings)))

    def _review(self, session: Session, index: int, change) -> None:
        try:
            change()
        except OSError as exc:
            self.show_failure(f"The review mark could not be saved ({exc.strerror}); it is kept for this session only")

    # --------------------------------------------------------------- display
    def _show_current(self, *_) -> None:
        """Shows the current slice, its map when cached (else asks the controller for it) and its result."""
        s = self.session
        if s is None or s.current < 0:
            return
        i = s.current
        if self.bar.model_input.isChecked() and i in s.inputs:
            unit, view = s.inputs[i].image, INPUT_VIEW
        else:
            unit, view = s.slices[i].display_image(self.tools.window), SLICE_VIEW
        cam = s.cam(i, view)
        if cam is None and i in s.results and not self.tools.cine.running:  # cine asked for every map at its start
            self.triage.request_cams(s, [i], view)
        self.views.show_image(unit, cam, self.bar.opacity.value() / 100, self.bar.overlay_toggle.isChecked())
        self.result_panel.show_slice(s, i, not self.bar.hide_identity.isChecked(), self.status_area.device.text(),
                                     self.triage.last_run_seconds)

    def _cine_running(self, running: bool) -> None:
        """Cine moves on before a map asked for frame by frame comes back, so the overlay would stay blank: the
        series' maps are asked for at once, from the slice shown onwards, in chunks that keep ahead of the frames."""
        s = self.session
        if running and s is not None and s.current >= 0:
            view = INPUT_VIEW if self.bar.model_input.isChecked() else SLICE_VIEW
            order = list(range(s.current, len(s.slices))) + list(range(s.current))
            self.triage.request_cams(s, order, view)

    # ----------------------------------------------------------------- export
    def report(self) -> StudyReport:
        return StudyReport.of(self.session, self.status_area.device.text(), not self.bar.hide_identity.isChecked())

    def export_pdf(self, path: Path) -> None:
        """Starts writing the PDF in a worker (its maps take a while); `exported` or `exportFailed` follows."""
        self.triage.export_pdf(self.report(), Path(path), self.session)

    def export_csv(self, path: Path) -> None:
        write_csv(self.report(), path)

    def _ask_target(self, title: str, pattern: str, suffix: str) -> Path | None:
        if self.session is None or not self.session.results:
            QMessageBox.information(self, title, "Open a study and let the model finish first.")
            return None
        path, _ = QFileDialog.getSaveFileName(self, title, str(Path(self.settings.value("last_folder", "")) /
                                                              f"brainmri-report{suffix}"), pattern)
        return Path(path) if path else None

    def export_report_dialog(self) -> None:
        path = self._ask_target("Export report", "PDF (*.pdf)", ".pdf")
        if path:
            self.status.setText(f"Writing {path}...")
            self.export_pdf(path)

    def export_csv_dialog(self) -> None:
        path = self._ask_target("Export table", "CSV (*.csv)", ".csv")
        if path:
            try:
                self.export_csv(path)
                self.status.setText(f"Saved {path}")
            except OSError as exc:
                QMessageBox.warning(self, "Export table", f"{path} could not be written: {exc.strerror or exc}")
