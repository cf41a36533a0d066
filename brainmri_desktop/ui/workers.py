"""Background work for the window: loading a study and running a model, as superqt generator workers.

Each yields progress and partial results and stops at its next yield when `quit()` is called (cancel).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from superqt.utils import thread_worker

from ..core.inference import LoadedModel, TTAConfig, predict
from ..core.io.study import iter_load
from ..core.preprocess import preprocess_slice


@thread_worker
def load_study(paths: list[Path]):
    """Yields ('progress', done, total); returns a LoadReport."""
    steps = iter_load(paths)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as finished:
            return finished.value
        yield ("progress", done, total)


@thread_worker
def run_model(entry, slices, tta: int, high_sensitivity: bool, loaded: dict, chunk: int = 32):
    """Yields ('model', LoadedModel) once, then ('results', [SliceResult]) per chunk as slices finish."""
    model = loaded.get(entry.manifest.id)
    if model is None:
        model = LoadedModel.load(entry)
        loaded[entry.manifest.id] = model
    yield ("model", model)
    spec = model.manifest.preprocessing
    point = model.manifest.operating_point(high_sensitivity)
    for start in range(0, len(slices), chunk):
        inputs = [preprocess_slice(s, spec) for s in slices[start : start + chunk]]
        yield ("inputs", start, inputs)
        results = predict(model, inputs, TTAConfig(count=tta), point=point)
        yield ("results", [replace(r, index=r.index + start) for r in results])
