"""The robust intensity range of a slice, shared by display, preprocessing and the trainer's data overview.

The 0.5th and 99.5th percentiles ignore the few hot pixels (burnt-in text, a flow artefact) that would squash the rest
of the range; they find the head before the head-based normalisation, and they window a slice that has no window.
"""

from __future__ import annotations

import numpy as np

ROBUST_PERCENTILES = (0.5, 99.5)


def robust_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, ROBUST_PERCENTILES)
    return float(lo), float(hi)
