"""`brainmri-train choose-tta`: a run's default number of test-time views, with calibration refitted for it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.config import TrainConfig
from trainer.train import choose_tta


def _run(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    labels = (np.arange(n) % 2).astype(np.int64)
    sources = np.array(["a", "b"] * (n // 2))
    # the second view is the first shifted and scaled: its mean with the first needs another calibration
    first = 2.0 * (labels - 0.5) + rng.normal(0, 1.0, n)
    views = np.stack([first, 3.0 * first + 1.0])
    cfg = TrainConfig.from_dict({"data": ["x"], "tta_eval": 2, "bootstrap": 0})
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    (tmp_path / "results.json").write_text(json.dumps({"default_tta": 1, "epochs_trained": 3}))
    np.savez(tmp_path / "predictions.npz", val_logits=views, val_labels=labels, val_sources=sources,
             test_logits=views[:, :50], test_labels=labels[:50], test_sources=sources[:50])
    return tmp_path


def test_the_chosen_views_become_the_default_with_their_own_calibration(tmp_path):
    run = _run(tmp_path)
    one = choose_tta(run, 1)
    two = choose_tta(run, 2)
    saved = json.loads((run / "results.json").read_text())
    assert saved["default_tta"] == 2 and saved["tta_choice"] == "chosen"
    assert saved["epochs_trained"] == 3  # the rest of the run's record is kept
    assert two["temperature"] != pytest.approx(one["temperature"], rel=0.05)
    assert set(saved["tta_comparison"]) == {"1", "2"}


def test_more_views_than_were_saved_are_refused(tmp_path):
    with pytest.raises(ValueError, match="2 views"):
        choose_tta(_run(tmp_path), 3)
