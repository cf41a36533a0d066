"""Background work for the window, as superqt generator workers: loading a study, triaging a series, Grad-CAM maps and
the PDF export. Nothing heavier than showing a result runs on the UI thread.

Each yields progress and partial results and stops at its next yield when `quit()` is called (cancel). Workers compute;
the window stores what they yield in its session, on the UI thread, so a late yield of a cancelled run is dropped.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
from superqt.utils import thread_worker

from ..core.gradcam import GradCAM
from ..core.inference import LoadedModel, TTAConfig
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
    """Moves every object alive now (TensorFlow, Keras, Qt wrappers, a loaded model: about a million) out of the
    garbage collector's reach. Scanning them in a full collection froze the window for 200 ms while a study loaded;
    they live as long as the application anyway."""
    gc.freeze()


def _ready(entry, loaded: dict) -> tuple[LoadedModel, GradCAM]:
    """The model and its Grad-CAM, loaded and traced here once: a first trace takes about half a second, which
    on the UI thread froze the window."""
    key = entry.manifest.content_key  # not the id: a package re-exported under the same id is another model
    if key not in loaded:
        model = LoadedModel.load(entry)
        cam = GradCAM(model)
        size = model.manifest.preprocessing.input_size
        cam.input_maps(np.zeros((1, size, size), np.float32))
        loaded[key] = (model, cam)
        settle_heap()
    return loaded[key]


@thread_worker
def triage(session: Session, entry, tta: int, loaded: dict, chunk: int = 32):
    """Yields ('model', LoadedModel, GradCAM) once, then ('chunk', TriageChunk) as slices finish."""
    model, cam = _ready(entry, loaded)
    yield ("model", model, cam)
    for part in session.triage(model, TTAConfig(count=tta), chunk):
        yield ("chunk", part)


@thread_worker
def explain(session: Session, gradcam: GradCAM, indices: list[int], view: str):
    """Yields {(index, view): map} for the given slices, a few at a time."""
    yield from session.cam_chunks(gradcam, indices, view)


@thread_worker
def export_pdf(report: StudyReport, path: Path, session: Session, gradcam: GradCAM | None):
    """Computes the missing maps of the report's slices, yields them for the session's cache, then writes the PDF."""
    yield from write_pdf_with_maps(report, path, session, gradcam)
