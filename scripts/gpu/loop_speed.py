"""Images per second of the whole training loop (input pipeline, augmentation and training step) on generated data.

    KERAS_BACKEND=jax python scripts/gpu/loop_speed.py --arch resnet50 --size 112 --batch 16 --steps 30 --workers 2

Prints one JSON line; the first epoch (compilation) is not counted. With --input-only, the batches alone (read,
augmented and built by --workers processes, as `brainmri-train train` builds them), without a model: two epochs, the
first of which includes starting the worker processes.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cnn")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--augment", default="heavy")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--precision", default="float32")
    p.add_argument("--input-only", action="store_true")
    args = p.parse_args()
    from trainer.augment import build_augmenter
    from trainer.dataset import make_sequence

    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    images = rng.integers(0, 255, (n, args.size, args.size), dtype=np.uint8)
    labels = rng.integers(0, 2, n)
    seq = make_sequence(images, labels, np.ones(n, np.float32), args.batch, args.size, build_augmenter(args.augment),
                        shuffle=True, workers=args.workers)
    try:
        print(json.dumps(input_speed(seq, args) if args.input_only else loop_speed(seq, args)))
    finally:
        seq.close()


def input_speed(seq, args) -> dict:
    rates = []
    for _epoch in range(2):
        t0 = time.perf_counter()
        count = sum(len(seq[i][0]) for i in range(len(seq)))
        rates.append(round(count / (time.perf_counter() - t0), 1))
        seq.on_epoch_end()
    return {"input_only": True, "size": args.size, "batch": args.batch, "workers": args.workers,
            "augment": args.augment, "first_epoch_images_per_second": rates[0], "images_per_second": rates[1]}


def loop_speed(seq, args) -> dict:
    import keras

    from trainer.architectures import ArchConfig, build
    from trainer.config import TrainConfig
    from trainer.train import Stage, compile_model
    from trainer.train_graph import keep_outputs_float32, precision, uint8_trainee

    with precision(args.precision):
        classifier = build(ArchConfig(arch=args.arch))
    keep_outputs_float32(classifier)
    model = uint8_trainee(classifier, "resnet50" if args.arch == "resnet50" else "unit")
    compile_model(model, Stage("all", 1, args.size, 1e-3, "adam", "all"), TrainConfig())
    model.fit(seq, epochs=1, steps_per_epoch=2, verbose=0)  # compilation
    t0 = time.perf_counter()
    model.fit(seq, epochs=1, verbose=0)
    dt = time.perf_counter() - t0
    return {"backend": keras.backend.backend(), "arch": args.arch, "size": args.size, "batch": args.batch,
            "workers": args.workers, "precision": args.precision, "steps": len(seq), "seconds": round(dt, 2),
            "images_per_second": round(len(seq) * args.batch / dt, 1)}


if __name__ == "__main__":
    main()
