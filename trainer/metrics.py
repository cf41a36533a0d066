"""Classification metrics with bootstrap 95% confidence intervals."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from brainmri_desktop.core.flag_rule import at_or_over

NAMES = ("accuracy", "precision", "sensitivity", "specificity", "f1", "auc")


def point_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    p, y = np.asarray(probs, float), np.asarray(labels, int)
    pred = at_or_over(p, threshold)
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    nan = float("nan")
    sens = tp / (tp + fn) if tp + fn else nan
    spec = tn / (tn + fp) if tn + fp else nan
    prec = tp / (tp + fp) if tp + fp else nan
    f1 = 2 * prec * sens / (prec + sens) if tp and (prec + sens) else (0.0 if tp + fn else nan)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else nan
    return {"accuracy": (tp + tn) / max(1, len(y)), "precision": prec, "sensitivity": sens, "specificity": spec,
            "f1": f1, "auc": auc, "n": int(len(y)), "positives": int(y.sum()),
            "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def with_intervals(probs, labels, threshold: float, n_boot: int = 500, seed: int = 0) -> dict:
    """Each metric with a percentile bootstrap 95% interval over resampled slices."""
    p, y = np.asarray(probs, float), np.asarray(labels, int)
    base = point_metrics(p, y, threshold)
    rng = np.random.default_rng(seed)
    draws = {k: [] for k in NAMES}
    for _ in range(n_boot if len(y) > 1 else 0):
        idx = rng.integers(0, len(y), len(y))
        m = point_metrics(p[idx], y[idx], threshold)
        for k in NAMES:
            if np.isfinite(m[k]):
                draws[k].append(m[k])
    out = {"n": base["n"], "positives": base["positives"], "confusion": base["confusion"], "threshold": threshold}
    for k in NAMES:
        lo, hi = (np.percentile(draws[k], [2.5, 97.5]) if len(draws[k]) > 10 else (float("nan"),) * 2)
        out[k] = {"value": _clean(base[k]), "ci95": [_clean(lo), _clean(hi)]}
    return out


def _clean(x) -> float | None:
    x = float(x)
    return round(x, 4) if np.isfinite(x) else None
