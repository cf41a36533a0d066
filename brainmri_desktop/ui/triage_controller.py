"""Runs the window's background work and hands the results to its session on the UI thread.

One worker of each kind at a time: loading, triage, Grad-CAM maps, PDF export. A new triage cancels the old one, and
whatever a cancelled or replaced worker still yields is dropped (its results must not mix with the new run's).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from ..core.report import StudyReport
from ..core.session import Session, Study
from .workers import explain, export_pdf, load_study, settle_heap, triage, warm_up


class TriageController(QObject):
    progress = Signal(int, int)  # done, total
    loaded = Signal(object, object)  # a LoadReport, and a ReviewStore for each of its series
    started = Signal(object, str)  # the Session being triaged, the model's name
    chunkArrived = Signal(object)  # the set of slice indices whose results arrived
    runFinished = Signal(bool)  # whether every slice got its answer (False: cancelled or stopped)
    camsArrived = Signal(object)  # the set of (index, view) keys now in the session's cache
    exported = Signal(str)  # path
    exportFailed = Signal(str)  # a sentence naming the file and the reason
    failed = Signal(str)  # a sentence for the reader
    deviceChanged = Signal(str)  # where the loaded model computes, in words ("ONNX Runtime, CPU (2 cores)")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.engines: dict = {}  # Manifest.content_key -> core.engine.Engine, one process per package content
        self.engine = None  # the engine of the run started last, once it has loaded
        self.session: Session | None = None
        self.load_worker = self.infer_worker = self.cam_worker = self.export_worker = None
        self._pending_cams: tuple[Session, list[int], str] | None = None
        self._then: tuple[Study, object, int] | None = None  # the study whose other series follow, entry, TTA
        self._started = 0.0
        self.last_run_seconds = 0.0
        self._shut = False

    @property
    def busy(self) -> bool:
        return self.load_worker is not None or self.infer_worker is not None

    # ---------------------------------------------------------------- loading
    def load(self, paths: list[Path], entry=None) -> None:
        """Loads a study in a worker; with the model `entry` that will triage it, its engine starts meanwhile."""
        self.cancel()
        if entry is not None and entry.manifest is not None and entry.manifest.content_key not in self.engines:
            warming = warm_up(entry, self.engines, _ignore_errors=True)  # a failure is said when the triage asks
            warming.returned.connect(self._warmed)
            warming.start()
        worker = load_study(paths, _ignore_errors=True)  # errors are handled below, not re-raised
        worker.yielded.connect(lambda msg: self.progress.emit(msg[1], msg[2]))
        worker.returned.connect(self._loaded)
        worker.errored.connect(lambda exc: self._load_failed(f"Loading failed: {exc}"))
        self.load_worker = worker
        worker.start()

    def _warmed(self, engine) -> None:
        if self._shut:  # the window closed while the engine started: it joined no one's list
            engine.close()

    def _loaded(self, result) -> None:
        self.load_worker = None
        settle_heap()  # the study's objects live while it is open: no full collection should scan them each time
        self.loaded.emit(*result)

    def _load_failed(self, text: str) -> None:
        self.load_worker = None
        self.failed.emit(text)

    # ----------------------------------------------------------------- triage
    @property
    def running(self) -> Session | None:
        """The series being triaged now."""
        return self.session if self.infer_worker is not None else None

    def run(self, session: Session, entry, tta: int, study: Study | None = None) -> None:
        """Triages the session's series with this model from the start; when it ends complete, each other series of
        `study` that this model has not triaged follows, one at a time (one worker: the window stays responsive, and
        the series shown gets the processor first)."""
        if self.infer_worker is not None:
            self.infer_worker.quit()
        self.session = session
        self._then = (study, entry, tta) if study is not None else None
        self.started.emit(session, entry.manifest.name)
        session.start(entry.manifest)
        self.engine = None
        if self._pending_cams is not None and self._pending_cams[0] is session:
            self._pending_cams = None  # its results are gone; a map asked for another series still waits for the model
        self._started = time.perf_counter()
        worker = triage(session, entry, tta, self.engines, _ignore_errors=True)
        worker.yielded.connect(lambda msg, w=worker: self._triage_message(w, msg))
        worker.errored.connect(lambda exc, w=worker: self._triage_failed(w, f"The model could not run: {exc}"))
        worker.finished.connect(lambda w=worker: self._triage_finished(w))
        self.infer_worker = worker
        worker.start()

    def _triage_message(self, worker, msg) -> None:
        if worker is not self.infer_worker:
            return
        if msg[0] == "model":
            self.engine = msg[1]
            self.deviceChanged.emit(self.engine.device)
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
        if self.session.complete and self._then is not None and self.infer_worker is None:
            study, entry, tta = self._then
            if (following := study.next_to_triage(entry.manifest)) is not None:
                self.run(following, entry, tta, study)

    def cancel(self) -> bool:
        """Stops loading and triage at their next step; says whether a triage was running."""
        running = self.infer_worker is not None
        for worker in (self.load_worker, self.infer_worker):
            if worker is not None:
                worker.quit()
        return running

    def shutdown(self) -> None:
        """The window closes: every worker stops at its next step, and nothing it still yields is taken."""
        self._then = self._pending_cams = None
        self._shut = True
        for worker in (self.load_worker, self.infer_worker, self.cam_worker, self.export_worker):
            if worker is not None:
                worker.quit()
        self.load_worker = self.infer_worker = self.cam_worker = self.export_worker = None
        for engine in self.engines.values():
            engine.close()  # a worker still waiting on one gets an error, which nobody takes now
        self.engines.clear()

    # --------------------------------------------------------------- Grad-CAM
    def request_cams(self, session: Session, indices: list[int], view: str) -> None:
        """Computes the missing maps of these slices in a worker; a request made while one runs waits for it (only
        the latest waits: the reader has moved on from the others). Any series of the study whose results came from
        the model loaded now can be explained, not only the one being triaged."""
        if self.gradcam_for(session) is None or self.cam_worker is not None:
            self._pending_cams = (session, indices, view)
            return
        self._pending_cams = None
        missing = session.missing_cams(indices, view)
        if not missing:
            return
        worker = explain(session, self.engine, missing, view, _ignore_errors=True)
        worker.yielded.connect(lambda maps, w=worker, s=session, inputs=session.inputs:
                               self._cams(w, s, inputs, maps))
        worker.errored.connect(lambda exc, w=worker: self._cams_failed(w, f"Grad-CAM could not be computed: {exc}"))
        worker.finished.connect(self._cams_done)
        self.cam_worker = worker
        worker.start()

    def gradcam_for(self, session: Session):
        """The loaded model's engine (its Grad-CAM) when that model is the one whose results the session holds, else
        None: a map from another model would explain a probability it did not give."""
        # the same package files (weights, architecture): a map depends on them, not on where the threshold lies
        explains = (session.manifest is not None and self.engine is not None and session.manifest.id == self.engine.id
                    and session.manifest.files == self.engine.manifest.files)
        return self.engine if explains else None

    def _cams(self, worker, session: Session, inputs: dict, maps: dict) -> None:
        # A series triaged again since the request (another model) starts a new inputs dict: its maps are stale.
        if worker not in (self.cam_worker, self.export_worker) or inputs is not session.inputs:
            return
        session.accept_cams(maps)
        self.camsArrived.emit(set(maps))

    def _cams_failed(self, worker, text: str) -> None:
        if worker is self.cam_worker:
            self.failed.emit(text)

    def _cams_done(self) -> None:
        self.cam_worker = None
        if self._pending_cams is not None:
            self.request_cams(*self._pending_cams)

    # ----------------------------------------------------------------- export
    def export_pdf(self, report: StudyReport, path: Path, session: Session) -> None:
        """Writes the PDF of the session's series in a worker, computing the maps of the flagged slices it shows that
        are not cached yet (when the model loaded now is the one whose results these are)."""
        worker = export_pdf(report, path, session, self.gradcam_for(session), _ignore_errors=True)
        worker.yielded.connect(lambda maps, w=worker, inputs=session.inputs: self._cams(w, session, inputs, maps))
        worker.returned.connect(lambda _=None: self.exported.emit(str(path)))
        worker.errored.connect(lambda exc: self.exportFailed.emit(
            f"{path} could not be written: {getattr(exc, 'strerror', None) or exc}"))
        worker.finished.connect(self._export_done)
        self.export_worker = worker
        worker.start()

    def _export_done(self) -> None:
        self.export_worker = None
