"""Background work for the window: loading a study and running a model, as superqt generator workers.

Each yields progress and partial results and stops at its next yield when `quit()` is called (cancel).
"""

from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path

import numpy as np
from superqt.utils import thread_worker

from ..core.gradcam import GradCAM
from ..core.inference import LoadedModel, TTAConfig, predict
from ..core.io.study import iter_load
from ..core.preprocess import preprocess_slice


@thread_worker
def load_study(paths: list[Path]):
    """Yields ('progress', done, total); returns a LoadReport."""
    steps = iter_load(paths)
    shown = -1
    while True:
        try:
            done, total = next(steps)
        except StopIteration as finished:
            return finished.value
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
    if entry.manifest.id not in loaded:
        model = LoadedModel.load(entry)
        cam = GradCAM(model)
        size = model.manifest.preprocessing.input_size
        cam.input_maps(np.zeros((1, size, size), np.float32))
        loaded[entry.manifest.id] = (model, cam)
        settle_heap()
    return loaded[entry.manifest.id]


@thread_worker
def run_model(entry, slices, tta: int, high_sensitivity: bool, loaded: dict, chunk: int = 32):
    """Yields ('model', LoadedModel, GradCAM) once, then ('inputs', start, [Preprocessed]) and
    ('results', [SliceResult]) per chunk as slices finish."""
    model, cam = _ready(entry, loaded)
    yield ("model", model, cam)
    spec = model.manifest.preprocessing
    point = model.manifest.operating_point(high_sensitivity)
    for start in range(0, len(slices), chunk):
        inputs = [preprocess_slice(s, spec) for s in slices[start : start + chunk]]
        yield ("inputs", start, inputs)
        results = predict(model, inputs, TTAConfig(count=tta), point=point)
        yield ("results", [replace(r, index=r.index + start) for r in results])
