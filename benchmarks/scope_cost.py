"""What the scope guard's out-of-distribution score adds to a prediction, per bundled model with a fit.

For each package with an `ood.npz`: seconds per slice for the logit alone (a plain `keras.Model` to `logit`, batches
of 32) and for the logit with the detector's layer maps from the same forward pass plus their cell means and the
distance (core/ood.py). The two are timed alternately, several rounds, and the medians compared, so a busy machine
slows both alike. Run: `python benchmarks/scope_cost.py [--slices 128] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brainmri_desktop.core.ood import load_ood, run_scoring, scoring_model  # noqa: E402
from brainmri_desktop.core.packages import discover, load_keras_model  # noqa: E402
from brainmri_desktop.core.preprocess import to_model_input  # noqa: E402


def main() -> int:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| model | input | logit only, ms/slice | logit + OOD score, ms/slice | added |\n|---|---|---|---|---|")
    for entry in discover():
        if entry.source != "bundled" or not entry.ok or not entry.manifest.ood_file:
            continue
        manifest = entry.manifest
        model = load_keras_model(entry.path, manifest)
        ood = load_ood(entry.path, manifest)
        size, norm = manifest.input_size, manifest.preprocessing.model_normalisation
        images = rng.random((args.slices, size, size), dtype=np.float32)
        plain = keras.Model(model.inputs, model.get_layer("logit").output)
        scoring = scoring_model(model, ood)

        def logits_only() -> None:
            for s in range(0, len(images), 32):
                plain.predict_on_batch(to_model_input(images[s : s + 32], norm))

        def with_score() -> None:
            _l, feats = run_scoring(scoring, images, norm, ood.grid)
            ood.score(feats)

        logits_only(), with_score()  # compile both first
        times: dict[str, list[float]] = {"plain": [], "scope": []}
        for _ in range(args.rounds):
            for name, fn in (("plain", logits_only), ("scope", with_score)):
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) / len(images) * 1000)
        a, b = np.median(times["plain"]), np.median(times["scope"])
        print(f"| {manifest.id} | {size} px | {a:.2f} | {b:.2f} | {b - a:+.2f} ({(b - a) / a:+.0%}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
