"""Temperature scaling (with a bias, or alone), calibration error, and the operating points stored in a manifest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from brainmri_desktop.core.flag_rule import at_or_over
from brainmri_desktop.core.inference import sigmoid
from brainmri_desktop.core.manifest import calibrated_logit


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    # log(1 + e^z) - y z, written stably
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


TEMPERATURE_BOUNDS = (0.05, 50.0)  # a fit that ends on either bound has found no calibration: export refuses it


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the log loss of sigmoid(logit / T) on held-out predictions."""
    z, y = np.asarray(logits, float), np.asarray(labels, float)
    res = minimize_scalar(lambda t: _nll(z / np.exp(t), y), bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded")
    return float(np.exp(res.x))


@dataclass(frozen=True)
class Calibration:
    """probability = sigmoid(logit / temperature + bias)"""

    temperature: float
    bias: float = 0.0


def fit_calibration(logits: np.ndarray, labels: np.ndarray) -> Calibration:
    """Temperature and bias minimising the log loss (Platt scaling, written as a temperature). Class weights and
    source weights shift the logit; a temperature alone leaves that shift in (ECE 0.16 on the first bundled CNN)."""
    z, y = np.asarray(logits, float), np.asarray(labels, float)
    start = [np.log(fit_temperature(z, y)), 0.0]
    res = minimize(lambda v: _nll(z / np.exp(v[0]) + v[1], y), start, method="Nelder-Mead",
                   options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
    log_t = float(np.clip(res.x[0], *np.log(TEMPERATURE_BOUNDS)))
    return Calibration(float(np.exp(log_t)), float(np.clip(res.x[1], -20, 20)))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Weighted mean gap between confidence and frequency over equal-width probability bins."""
    p, y = np.asarray(probs, float), np.asarray(labels, float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


@dataclass(frozen=True)
class Point:
    threshold: float
    sensitivity: float
    specificity: float


def _rates(probs: np.ndarray, labels: np.ndarray, t: float) -> tuple[float, float]:
    pred = at_or_over(probs, t)
    pos, neg = labels == 1, labels == 0
    sens = float(pred[pos].mean()) if pos.any() else float("nan")
    spec = float((~pred[neg]).mean()) if neg.any() else float("nan")
    return sens, spec


def _candidates(probs: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct probabilities: every distinct decision, none on a sample exactly."""
    u = np.unique(np.clip(probs, 1e-6, 1 - 1e-6))
    mids = (u[1:] + u[:-1]) / 2 if len(u) > 1 else u
    return np.clip(mids, 1e-6, 1 - 1e-6)


def youden_threshold(probs: np.ndarray, labels: np.ndarray) -> Point:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J); ties go to the one nearest 0.5."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, int)
    best = None
    for t in _candidates(probs):
        sens, spec = _rates(probs, labels, t)
        key = (round(sens + spec - 1, 12), -abs(t - 0.5))
        if best is None or key > best[0]:
            best = (key, Point(float(t), sens, spec))
    return best[1]


def sensitivity_threshold(probs: np.ndarray, labels: np.ndarray, target: float = 0.95) -> Point:
    """The highest threshold whose sensitivity still reaches `target` (so the best specificity at that sensitivity)."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, int)
    for t in _candidates(probs)[::-1]:
        sens, spec = _rates(probs, labels, t)
        if sens >= target:
            return Point(float(t), sens, spec)
    t = float(_candidates(probs)[0])
    return Point(t, *_rates(probs, labels, t))


def calibrated(logits: np.ndarray, calibration: Calibration) -> np.ndarray:
    return sigmoid(calibrated_logit(np.asarray(logits, float), calibration.temperature, calibration.bias))
