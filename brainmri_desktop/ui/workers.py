"""Background work for the window, as superqt generator workers: loading a study, triaging a series, Grad-CAM maps and
the PDF export. Nothing heavier than showing a result runs on the UI thread, and the model computes in its own
process (core/engine.py): these threads only wait for it.

Each yields progress and partial results and stops at its next yield when `quit()` is called (cancel). Workers compute;
the window stores what they yield in its session, on the UI thread, so a late yield of a cancelled run is dropped.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from superqt.utils import thread_worker

from ..core.engine import Engine
from ..core.inference import TTAConfig
from ..core.io.study import iter_load
from ..core.report import StudyReport, write_pdf_with_maps
from ..core.review import ReviewStore
from ..core.session import Session


@thread_worker
def load_study(paths: list[Path]):
    """Yields ('progress', done, total); returns the LoadReport and each series' ReviewStore (its keys resolve every
    file's path, and its marks are read from disk: a tenth of a second for 2,000 slices, kept off the UI thread)."""
    steps = iter_load(paths)
    shown = -1
    while True:
        try:
            done, total = next(steps)
        except StopIteration as finished:
            report = finished.value
            return report, [ReviewStore(series.slices) for series in report.series]
        # A progress bar repaints on every new value: one per percent, not one per file.
        if done * 100 // max(1, total) != shown:
            shown = done * 100 // max(1, total)
            yield ("progress", done, total)


def settle_heap() -> None:
    """Moves every object alive now (Qt wrappers, a loaded study's slices and headers) out of the garbage
    collector's reach. Scanning them in a full collection froze the window for 200 ms while a study loaded; they live
    as long as the study anyway."""
    gc.freeze()


_starting = threading.Lock()  # one start per package: the warm-up and a triage may ask for the same engine at once


def _ready(entry, engines: dict) -> Engine:
    """The package's engine process, started once per package content (a start takes a second or two: the child
    imports its runtime, loads the graphs and traces Grad-CAM once)."""
    key = entry.manifest.content_key  # not the id: a package re-exported under the same id is another model
    with _starting:
        if key not in engines:
            engines[key] = Engine(entry)
        return engines[key]


@thread_worker
def warm_up(entry, engines: dict):
    """Starts the package's engine while the study loads, so that the triage finds it ready."""
    return _ready(entry, engines)


@thread_worker
def triage(session: Session, entry, tta: int, engines: dict, chunk: int = 32):
    """Yields ('model', Engine) once, then ('chunk', TriageChunk) as slices finish, computed in the engine's process."""
    engine = _ready(entry, engines)
    yield ("model", engine)
    yield from (("chunk", part) for part in engine.triage(session.slices, TTAConfig(count=tta), session.point,
                                                          session.scope, chunk))


@thread_worker
def explain(session: Session, gradcam: Engine, indices: list[int], view: str):
    """Yields {(index, view): map} for the given slices, a few at a time."""
    yield from session.cam_chunks(gradcam, indices, view)


@thread_worker
def export_pdf(report: StudyReport, path: Path, session: Session, gradcam: Engine | None):
    """Computes the missing maps of the report's slices, yields them for the session's cache, then writes the PDF."""
    yield from write_pdf_with_maps(report, path, session, gradcam)
