"""Rules the trainer shares with the application: one flag comparison, and a configuration the application can run."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri_desktop.core import flag_rule
from brainmri_desktop.core.augment import MAX_TTA
from brainmri_desktop.core.inference import SliceResult
from brainmri_desktop.core.manifest import OperatingPoint
from brainmri_desktop.core.session import decide
from trainer import calibrate, metrics
from trainer.config import TrainConfig, validate


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
