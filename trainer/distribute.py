"""Training on several devices: Keras 3's distribution API, data-parallel over every device JAX sees.

`--distribute data` builds and trains the model under `keras.distribution.DataParallel`: the weights are replicated
on each device, each global batch is split along its first axis between them, and XLA sums the gradients across
devices inside the compiled step, so one step over N devices is the step one device takes on the whole batch (tested
on two simulated CPU devices). Several GPUs on one host need nothing more; several hosts start the same command on
each with Keras' variables KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and
KERAS_DISTRIBUTION_PROCESS_ID set, which `keras.distribution.initialize` reads (it calls `jax.distributed.initialize`),
and then every host's devices form one mesh (docs/BATCH.md).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

MODES = ("none", "data")


def check(mode: str, batch_size: int) -> None:
    """A ValueError saying what cannot work before any data is read."""
    if mode not in MODES:
        raise ValueError(f"distribute must be one of {', '.join(MODES)}")
    if mode == "none":
        return
    from brainmri_desktop.core import backend

    if backend.name() != "jax":
        raise ValueError("--distribute data runs on Keras' JAX backend: start with KERAS_BACKEND=jax")
    count = len(devices())
    if batch_size % count:
        raise ValueError(f"--distribute data splits each batch between {count} devices: the batch size "
                         f"({batch_size}) must be a multiple of {count}")


def devices() -> list[str]:
    """Every device of the job, as Keras names them ("cuda:0", "cpu:1"), after joining the other hosts if asked."""
    import keras

    if os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        _join_hosts()
    return list(keras.distribution.list_devices())


@functools.cache  # jax.distributed.initialize may run once per process
def _join_hosts() -> None:
    import keras

    keras.distribution.initialize()


@contextmanager
def distribution(mode: str) -> Iterator[list[str] | None]:
    """Inside, the models built and trained use `mode`'s distribution; yields the devices it spans (None for none)."""
    if mode == "none":
        yield None
        return
    import keras

    spanned = devices()
    with keras.distribution.DataParallel(devices=spanned).scope():
        yield spanned


def divisible_batches(sequence, devices: int):
    """`sequence` (a Keras PyDataset of (x, y, weights)) with each batch padded to a multiple of `devices`: a sharded
    batch must split evenly, and evaluation's last batch is as long as what is left. The padding repeats the last
    example with weight 0, so the weighted metrics (the validation AUC that picks the best epoch) are those of the
    real examples; the validation loss Keras reports divides by the padded count (at most `devices` - 1 more)."""
    import keras
    import numpy as np

    def pad(batch, extra: int, fill):
        return keras.tree.map_structure(lambda a: np.concatenate([a, fill(a[-1:], extra)]), batch)

    class Divisible(keras.utils.PyDataset):
        def __len__(self):
            return len(sequence)

        def __getitem__(self, i):
            x, y, w = sequence[i]
            extra = -len(x) % devices
            if not extra:
                return x, y, w
            repeat = lambda last, n: np.repeat(last, n, axis=0)  # noqa: E731
            zeros = lambda last, n: np.zeros((n, *last.shape[1:]), last.dtype)  # noqa: E731
            return pad(x, extra, repeat), pad(y, extra, repeat), pad(w, extra, zeros)

    return Divisible()
