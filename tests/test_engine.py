"""The model in its own process (core/engine.py): the same answers as in this process, at a lower priority, and
errors that name the reason instead of hanging or killing the caller."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainmri_desktop.core.engine import Engine
from brainmri_desktop.core.errors import EngineError
from brainmri_desktop.core.gradcam import GradCAM
from brainmri_desktop.core.inference import LoadedModel, TTAConfig
from brainmri_desktop.core.io.slices import Slice
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover
from brainmri_desktop.core.preprocess import preprocess_slice
from brainmri_desktop.core.session import triage_chunks

from .synthetic import blob_image


@pytest.fixture(scope="module")
def entry(model_dir):
    return find_model(discover([model_dir]), "tiny-cnn")


@pytest.fixture(scope="module")
def engine(entry):
    started = Engine(entry)
    yield started
    started.close()


def _slices(n: int) -> list[Slice]:
    kinds = ("none", "small", "large")
    return [Slice(Path(f"/nowhere/s{i}.png"), blob_image(kinds[i % 3], seed=i)) for i in range(n)]


def test_the_engine_triages_as_this_process_does_chunk_by_chunk(engine, entry):
    slices = _slices(7)
    here = LoadedModel.load(entry)
    expected = list(triage_chunks(here, slices, TTAConfig(count=2), chunk=3))
    got = list(engine.triage(slices, TTAConfig(count=2), chunk=3))
    assert [(c.start, c.stop) for c in got] == [(0, 3), (3, 6), (6, 7)]
    for mine, theirs in zip(got, expected):
        assert sorted(mine.results) == sorted(theirs.results) == list(range(mine.start, mine.stop))
        for i in mine.results:
            assert mine.results[i].index == i
            assert mine.results[i].probability == pytest.approx(theirs.results[i].probability, abs=1e-6)
            np.testing.assert_array_equal(mine.inputs[i].image, theirs.inputs[i].image)
        assert mine.verdicts == theirs.verdicts


def test_the_engines_maps_are_this_process_grad_cam(engine, entry):
    spec = entry.manifest.preprocessing
    inputs = [preprocess_slice(s, spec) for s in _slices(4)]
    cam = GradCAM(LoadedModel.load(entry))
    for mine, theirs in zip(engine.slice_maps(inputs), cam.slice_maps(inputs)):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    images = np.stack([p.image for p in inputs])
    np.testing.assert_allclose(engine.input_maps(images), cam.input_maps(images), atol=1e-5)
    assert engine.slice_maps([]) == []


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no nice values on this system")
def test_the_engine_computes_at_a_lower_priority_than_the_window(engine):
    assert os.getpriority(os.PRIO_PROCESS, engine.pid) > os.getpriority(os.PRIO_PROCESS, 0)
    assert engine.pid != os.getpid() and engine.device


def test_a_failed_request_is_an_error_for_its_caller_and_the_engine_goes_on(engine):
    with pytest.raises(EngineError):
        engine.input_maps(np.zeros((1, 5), np.float32))  # not an image
    assert len(list(engine.triage(_slices(2), TTAConfig(count=1)))) == 1


def test_a_package_the_child_cannot_load_is_an_error_with_its_reason(model_dir, tmp_path):
    # the package verified when it was found, and its graph went away before the model was started
    shutil.copytree(model_dir / "tiny-cnn", tmp_path / "tiny-cnn")
    found = find_model(discover([tmp_path]), "tiny-cnn")
    graph = tmp_path / "tiny-cnn" / (found.manifest.graph_file or "weights.npz")
    graph.unlink()
    with pytest.raises(EngineError, match=graph.name):
        Engine(found)


def test_a_closed_or_killed_engine_raises_instead_of_hanging(entry):
    started = Engine(entry)
    started._process.kill()
    with pytest.raises(EngineError, match="stopped"):
        started.input_maps(np.zeros((1, 32, 32), np.float32))
    started.close()
    with pytest.raises(EngineError, match="closed"):
        list(started.triage(_slices(1)))
    assert not started._process.is_alive()
