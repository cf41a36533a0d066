"""Rules the trainer shares with the application: one flag comparison, and a configuration the application can run."""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from brainmri_desktop.core import flag_rule
from brainmri_desktop.core.augment import MAX_TTA
from brainmri_desktop.core.inference import SliceResult
from brainmri_desktop.core.manifest import OperatingPoint
from brainmri_desktop.core.session import decide
import trainer
from trainer import calibrate, export, metrics
from trainer.calibrate import TEMPERATURE_BOUNDS
from trainer.cli import main as brainmri_train
from trainer.config import TrainConfig, validate
from trainer.export import weakness


def _result(p: float) -> SliceResult:
    return SliceResult(index=0, probability=p, tta_std=0.0, p_low=p, p_high=p, augmentations=1, head_fraction=0.5)


def test_the_trainer_counts_flags_with_the_rule_the_window_applies(monkeypatch):
    probs, labels, t = np.array([0.2, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 1]), 0.5
    point = OperatingPoint(threshold=t, method="test", data="test")

    def window_flags():
        return [decide(_result(p), point).flagged for p in probs]

    def trainer_flags():
        c = metrics.point_metrics(probs, labels, t)["confusion"]
        sens, _ = calibrate._rates(probs, labels, t)
        return c["tp"] + c["fp"], sens

    assert window_flags() == [False, True, True, True]
    assert trainer_flags() == (3, 1.0)
    # a changed rule changes both sides: neither keeps a comparison of its own
    monkeypatch.setattr(flag_rule, "at_or_over", lambda p, t: np.asarray(p, float) > t)
    for module in ("brainmri_desktop.core.session", "trainer.metrics", "trainer.calibrate", "trainer.evaluate",
                   "trainer.plots"):
        monkeypatch.setattr(f"{module}.at_or_over", flag_rule.at_or_over)
    assert window_flags() == [False, False, False, True]
    assert trainer_flags() == (1, 0.5)


@pytest.mark.parametrize("views", [0, MAX_TTA + 1])
def test_tta_eval_outside_what_the_application_runs_is_refused(views):
    with pytest.raises(ValueError, match="tta_eval"):
        validate(TrainConfig.from_dict({"data": ["x"], "tta_eval": views}))


def test_tta_eval_at_the_limit_is_accepted():
    validate(TrainConfig.from_dict({"data": ["x"], "tta_eval": MAX_TTA}))


def _run(tmp_path, auc: float, temperature: float):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "cnn"}))
    (run / "results.json").write_text(json.dumps({"validation": {"auc": {"value": auc}},
                                                  "temperature": temperature}))
    return run


@pytest.mark.parametrize("auc, temperature, why", [(0.11, 1.3, "validation AUC is 0.11"),
                                                   (0.95, TEMPERATURE_BOUNDS[1], "calibration collapsed"),
                                                   (0.95, TEMPERATURE_BOUNDS[0], "calibration collapsed")])
def test_export_refuses_a_weak_run_in_one_line_unless_forced(tmp_path, capsys, monkeypatch, auc, temperature,
                                                             why):
    run = _run(tmp_path, auc, temperature)
    assert brainmri_train(["export", str(run), "--to", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert why in err and "--force" in err and err.count("\n") == 1
    assert not (tmp_path / "models").exists()

    def past_the_check(*args):
        raise RuntimeError("past the check")

    monkeypatch.setattr(export, "manifest_from_run", past_the_check)
    with pytest.raises(RuntimeError, match="past the check"):
        brainmri_train(["export", str(run), "--to", str(tmp_path / "models"), "--force"])


def test_a_sound_run_is_not_called_weak():
    assert weakness({"validation": {"auc": {"value": 0.93}}, "temperature": 1.4}) is None


def _imports(module: str) -> set[str]:
    """The trainer modules `module` imports anywhere in its text, inside functions too."""
    tree = ast.parse((Path(trainer.__file__).parent / f"{module}.py").read_text())
    return {node.module.lstrip(".").removeprefix("trainer.") for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and (node.level or node.module.startswith("trainer"))}


def test_training_and_the_transfer_import_in_one_direction():
    assert "remote" not in _imports("train")
    assert not {"train", "remote"} & _imports("pack")
    assert not {"train", "remote", "pack"} & _imports("config")


def test_a_scope_fit_that_fails_half_way_leaves_the_package_as_it_was(tmp_path, monkeypatch):
    from brainmri_desktop.core.manifest import Manifest
    from brainmri_desktop.core.ood import load_ood
    from brainmri_desktop.core.packages import read_package
    from trainer.scope_fit import write_scope

    from .test_scope import write_fitted_package

    package = write_fitted_package(tmp_path / "fitted")
    before = {p.name: p.read_bytes() for p in package.iterdir()}
    manifest = read_package(package)
    detector = load_ood(package, manifest)
    monkeypatch.setattr(Manifest, "to_json", lambda self: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        write_scope(package, replace(detector, threshold=detector.threshold * 2), {}, {}, "a new section")
    assert {p.name: p.read_bytes() for p in package.iterdir()} == before


def test_the_preprocessing_cache_is_written_whole_and_read_back(tmp_path):
    from brainmri_desktop.core.preprocess import PreprocessSpec
    from trainer.data import load_source
    from trainer.dataset import build_cache

    from .synthetic import write_labelled_folder

    samples = load_source(write_labelled_folder(tmp_path / "d", n_per_class=2, size=32), "d", None, None)
    spec = PreprocessSpec(input_size=32)
    built = build_cache(samples, spec, tmp_path / "cache", workers=1)
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".") or "tmp" in p.name] == []
    again = build_cache(samples, spec, tmp_path / "cache", workers=1)
    assert np.array_equal(built.images, again.images) and np.array_equal(built.hashes, again.hashes)


def test_a_lesion_target_the_trainer_does_not_know_is_refused():
    with pytest.raises(ValueError, match="lesion_target"):
        validate(TrainConfig.from_dict({"data": ["x"], "lesion_target": "center"}))
    validate(TrainConfig.from_dict({"data": ["x"], "lesion_target": "centre"}))
