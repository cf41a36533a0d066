"""Which backend and device the models compute on, said once in words the application can show
("TensorFlow, CPU (2 cores)", "JAX, GPU (NVIDIA H200)"), and TensorFlow's start-up logging kept quiet.

Imported before anything loads TensorFlow, so the log level below is read when TensorFlow starts.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from . import backend

NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present wherever the NVIDIA kernel driver runs (Linux)

# TensorFlow's CUDA build calls cuInit at start-up and logs "failed call to cuInit ... UNKNOWN ERROR (303)" as an
# ERROR wherever there is no NVIDIA driver: on every CPU-only machine. There its C++ errors say nothing a user can act
# on (Python errors still raise), so only they are hidden; with a driver, warnings stay hidden and errors are shown.
# A level the user set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if NVIDIA_DRIVER.exists() else "3")


@contextmanager
def _stderr_to_devnull():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow 2.17+ logs through absl before anything initialises absl's logging, and uninitialised absl writes every
# message to stderr whatever TF_CPP_MIN_LOG_LEVEL says: the oneDNN and CUDA-stub notes, twice, before every command's
# output. They come while the library loads, so Keras (and TensorFlow under it) is loaded here with the process's
# stderr closed; Python's own errors still raise after it is back. A level the user set low shows them.
if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("2", "3") and "keras" not in sys.modules:
    with _stderr_to_devnull():
        import keras  # noqa: F401


def _tensorflow_accelerator() -> str | None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised: growth can no longer be changed, which is harmless
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU ({details.get('device_name', gpus[0].name)})"


def _jax_accelerator() -> str | None:
    import jax

    device = jax.devices()[0]
    return None if device.platform == "cpu" else f"{device.platform.upper()} ({device.device_kind})"


def _torch_accelerator() -> str | None:
    import torch

    return f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else None


ACCELERATORS = {"tensorflow": _tensorflow_accelerator, "jax": _jax_accelerator, "torch": _torch_accelerator}


@lru_cache(maxsize=1)
def accelerator() -> str | None:
    """The accelerator the backend computes on ("GPU (NVIDIA H200)"), or None on the CPU."""
    find = ACCELERATORS.get(backend.name())
    return find() if find else None


def device_description() -> str:
    return f"{backend.display_name()}, {accelerator() or f'CPU ({os.cpu_count()} cores)'}"
