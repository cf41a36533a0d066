"""Near-duplicate grouping by a 16x16 difference hash, so that no group straddles a split.

Two images are linked when their hashes differ in at most `max_distance` of 256 bits; groups are the connected
components of those links, joined with patient groups where patients are known.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .data import Sample

HASH_SIZE = 16


def dhash(image: np.ndarray) -> np.ndarray | None:
    """256-bit difference hash as 4 uint64 words, or None for an image too flat to hash meaningfully (blank slices
    would otherwise all be 'duplicates' of each other)."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey.astype(np.float32), (HASH_SIZE + 1, HASH_SIZE), interpolation=cv2.INTER_AREA)
    if small.std() < 1e-3 * max(1.0, float(np.abs(small).max())):
        return None
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return np.packbits(bits).view(np.uint64)


def _popcount64(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8), axis=-1).sum(axis=-1)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class Grouping:
    groups: list[int]  # group id per sample
    linked_pairs: int  # hash links found
    merged_images: int  # samples that share their group with another because of a hash link


def group_samples(samples: list[Sample], hashes: list[np.ndarray | None], max_distance: int = 4) -> Grouping:
    n = len(samples)
    uf = _UnionFind(n)
    first_of_patient: dict[tuple[str, str], int] = {}
    for i, s in enumerate(samples):
        if s.patient:
            key = (s.source, s.patient)
            uf.union(i, first_of_patient.setdefault(key, i))
    idx = [i for i, h in enumerate(hashes) if h is not None and not samples[i].patient]
    links = 0
    linked: set[int] = set()
    if idx:
        matrix = np.stack([hashes[i] for i in idx])
        for row, i in enumerate(idx[:-1]):
            xor = np.bitwise_xor(matrix[row + 1 :], matrix[row])
            close = np.nonzero(_popcount64(xor) <= max_distance)[0]
            for c in close:
                j = idx[row + 1 + int(c)]
                uf.union(i, j)
                linked.update((i, j))
                links += 1
    return Grouping([uf.find(i) for i in range(n)], links, len(linked))
