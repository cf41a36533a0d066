"""Leak-free, stratified splits over groups (patients and near-duplicate groups), never over single images."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from .data import Sample


@dataclass(frozen=True)
class Split:
    train: list[int]
    val: list[int]
    test: list[int]


def _strata(samples: list[Sample], groups: list[int]) -> dict[tuple, list[list[int]]]:
    """Groups bucketed by (source, majority label), each group a list of sample indices."""
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    strata: dict[tuple, list[list[int]]] = defaultdict(list)
    for g, idx in sorted(members.items()):
        label = int(round(np.mean([samples[i].label for i in idx])))
        strata[(samples[idx[0]].source, label)].append(idx)
    return strata


def split_groups(
    samples: list[Sample], groups: list[int], fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Split:
    """Each stratum's groups are shuffled and dealt out until each part holds its share of images."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    strata = _strata(samples, groups)
    for key in sorted(strata):
        buckets = strata[key]
        order = rng.permutation(len(buckets))
        total = sum(len(b) for b in buckets)
        targets = np.cumsum(fractions) * total
        filled = 0
        for k in order:
            part = int(np.searchsorted(targets, filled, side="right"))
            parts[min(part, 2)].extend(buckets[k])
            filled += len(buckets[k])
    return Split(*[sorted(p) for p in parts])


def group_kfold(samples: list[Sample], groups: list[int], k: int = 5, seed: int = 0) -> list[list[int]]:
    """k folds of sample indices; within each stratum, groups go (largest first) to the fold that is smallest."""
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    strata = _strata(samples, groups)
    for key in sorted(strata):
        buckets = strata[key]
        order = sorted(rng.permutation(len(buckets)), key=lambda b: -len(buckets[b]))
        sizes = [0] * k
        for b in order:
            f = int(np.argmin(sizes))
            folds[f].extend(buckets[b])
            sizes[f] += len(buckets[b])
    return [sorted(f) for f in folds]
