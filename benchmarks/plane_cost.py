"""What reading the plane from the pixels (core/plane.py) costs each header-less slice.

Two parts, timed separately, several rounds, medians: the classifier's own input (`plane_input`: head mask, crop,
scale, resize to 32 px) on a 256 x 256 slice, and the numpy forward pass, one slice at a time as the scope check
calls it. Run: `python benchmarks/plane_cost.py [--slices 200] [--rounds 5] [--size 256]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri_desktop.core.demo import head_image  # noqa: E402
from brainmri_desktop.core.plane import bundled_classifier, plane_input  # noqa: E402


def _median_ms(fn, items, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - t) / len(items) * 1000)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    slices = [head_image(args.size, args.size, seed=i).astype(np.float32) for i in range(args.slices)]
    clf = bundled_classifier()
    inputs = [plane_input(s) for s in slices]
    prepare = _median_ms(plane_input, slices, args.rounds)
    forward = _median_ms(clf.plane, inputs, args.rounds)
    print(f"| slice | input, ms/slice | forward pass, ms/slice | total |\n|---|---|---|---|\n"
          f"| {args.size} x {args.size} | {prepare:.2f} | {forward:.2f} | {prepare + forward:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
