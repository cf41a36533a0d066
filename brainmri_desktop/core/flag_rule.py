"""The comparison that flags a probability: the application's `session.decide` and the trainer's metrics both use it,
so the sensitivity a card or the result panel quotes is measured with the rule the window applies."""

from __future__ import annotations

import numpy as np


def at_or_over(probability, threshold: float):
    """True where `probability` (a number or an array) reaches `threshold`: a slice exactly at it is flagged."""
    if isinstance(probability, (float, int, np.number)):
        # One slice: the window decides every slice after each chunk of a triage, and a scalar through np.asarray
        # costs it twenty times as much.
        return float(probability) >= threshold
    return np.asarray(probability, float) >= threshold
