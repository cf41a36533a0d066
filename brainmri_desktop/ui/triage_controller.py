"""Runs the window's background work and hands the results to its session on the UI thread.

One worker of each kind at a time: loading, triage, Grad-CAM maps, PDF export. A new triage cancels the old one, and
whatever a cancelled or replaced worker still yields is dropped (its results must not mix with the new run's).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..core.report import StudyReport
from ..core.session import Session
from .workers import explain, export_pdf, load_study, settle_heap, triage


class TriageController(QObject):
    progress = Signal(int, int)  # done, total
    loaded = Signal(object, object)  # a LoadReport, and a ReviewStore for each of its series
    chunkArrived = Signal(object)  # the set of slice indices whose results arrived
    runFinished = Signal(bool)  # whether every slice got its answer (False: cancelled or stopped)
    camsArrived = Signal(object)  # the set of (index, view) keys now in the session's cache
    exported = Signal(str)  # path
    exportFailed = Signal(str)  # a sentence naming the file and the reason
    failed = Signal(str)  # a sentence for the reader

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loaded_models: dict = {}  # id -> (LoadedModel, GradCAM), loaded once per run of the application
        self.model = None
        self.gradcam = None
        self.session: Session | None = None
        self.load_worker = self.infer_worker = self.cam_worker = self.export_worker = None
        self._pending_cams: tuple[Session, list[int], str] | None = None
        self._run = 0  # maps computed for an earlier run (another model) must not reach the new run's cache
        self._started = 0.0
        self.last_run_seconds = 0.0

    @property
    def busy(self) -> bool:
        return self.load_worker is not None or self.infer_worker is not None

    # ---------------------------------------------------------------- loading
    def load(self, paths: list[Path]) -> None:
        self.cancel()
        worker = load_study(paths, _ignore_errors=True)  # errors are handled below, not re-raised
        worker.yielded.connect(lambda msg: self.progress.emit(msg[1], msg[2]))
        worker.returned.connect(self._loaded)
        worker.errored.connect(lambda exc: self._load_failed(f"Loading failed: {exc}"))
        self.load_worker = worker
        worker.start()

    def _loaded(self, result) -> None:
        self.load_worker = None
        settle_heap()  # the study's objects live while it is open: no full collection should scan them each time
        self.loaded.emit(*result)

    def _load_failed(self, text: str) -> None:
        self.load_worker = None
        self.failed.emit(text)

    # ----------------------------------------------------------------- triage
    def run(self, session: Session, entry, tta: int) -> None:
        """Triages the session's series with this model from the start."""
        if self.infer_worker is not None:
            self.infer_worker.quit()
        self.session = session
        self._run += 1
        session.start(entry.manifest)
        self.model = self.gradcam = None
        self._pending_cams = None
        self._started = time.perf_counter()
        worker = triage(session, entry, tta, self.loaded_models, _ignore_errors=True)
        worker.yielded.connect(lambda msg, w=worker: self._triage_message(w, msg))
        worker.errored.connect(lambda exc, w=worker: self._triage_failed(w, f"The model could not run: {exc}"))
        worker.finished.connect(lambda w=worker: self._triage_finished(w))
        self.infer_worker = worker
        worker.start()

    def _triage_message(self, worker, msg) -> None:
        if worker is not self.infer_worker:
            return
        if msg[0] == "model":
            self.model, self.gradcam = msg[1], msg[2]
            if self._pending_cams is not None:
                self.request_cams(*self._pending_cams)
        else:
            chunk = msg[1]
            self.session.accept(chunk)
            self.progress.emit(len(self.session.results) + len(self.session.errors), len(self.session.slices))
            self.chunkArrived.emit(set(chunk.results) | set(chunk.errors))

    def _triage_failed(self, worker, text: str) -> None:
        if worker is self.infer_worker:
            self.failed.emit(text)

    def _triage_finished(self, worker) -> None:
        if worker is not self.infer_worker:
            return
        self.infer_worker = None
        self.last_run_seconds = time.perf_counter() - self._started
        self.runFinished.emit(self.session.complete)

    def cancel(self) -> bool:
        """Stops loading and triage at their next step; says whether a triage was running."""
        running = self.infer_worker is not None
        for worker in (self.load_worker, self.infer_worker):
            if worker is not None:
                worker.quit()
        return running

    # --------------------------------------------------------------- Grad-CAM
    def request_cams(self, session: Session, indices: list[int], view: str) -> None:
        """Computes the missing maps of these slices in a worker; a request made while one runs waits for it (only
        the latest waits: the reader has moved on from the others)."""
        if self.gradcam is None or self.cam_worker is not None or session is not self.session:
            self._pending_cams = (session, indices, view)
            return
        self._pending_cams = None
        missing = session.missing_cams(indices, view)
        if not missing:
            return
        worker = explain(session, self.gradcam, missing, view, _ignore_errors=True)
        worker.yielded.connect(lambda maps, s=session, run=self._run: self._cams(s, run, maps))
        worker.errored.connect(lambda exc: self.failed.emit(f"Grad-CAM could not be computed: {exc}"))
        worker.finished.connect(self._cams_done)
        self.cam_worker = worker
        worker.start()

    def _cams(self, session: Session, run: int, maps: dict) -> None:
        if run != self._run:
            return
        session.accept_cams(maps)
        if session is self.session:
            self.camsArrived.emit(set(maps))

    def _cams_done(self) -> None:
        self.cam_worker = None
        if self._pending_cams is not None:
            self.request_cams(*self._pending_cams)

    # ----------------------------------------------------------------- export
    def export_pdf(self, report: StudyReport, path: Path) -> None:
        """Writes the PDF in a worker, computing the maps of the flagged slices it shows that are not cached yet."""
        session = self.session
        worker = export_pdf(report, path, session, self.gradcam, report.pdf_slices(),
                            _ignore_errors=True)
        worker.yielded.connect(lambda maps, run=self._run: self._cams(session, run, maps))
        worker.returned.connect(lambda _=None: self.exported.emit(str(path)))
        worker.errored.connect(lambda exc: self.exportFailed.emit(
            f"{path} could not be written: {getattr(exc, 'strerror', None) or exc}"))
        worker.finished.connect(self._export_done)
        self.export_worker = worker
        worker.start()

    def _export_done(self) -> None:
        self.export_worker = None
