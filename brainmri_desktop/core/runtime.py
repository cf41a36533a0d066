"""Which runtime computes a package's outputs, and on which device, said once in words the application can show
("ONNX Runtime, CPU (2 cores)", "TensorFlow, GPU (NVIDIA H200)"); and Keras loaded with TensorFlow's start-up logging
kept quiet.

The runtime is ONNX Runtime when the package has graphs and it is installed (the application's install has no
TensorFlow at all), else Keras on its backend; `--runtime` or BRAINMRI_RUNTIME asks for one. Imported before anything
loads TensorFlow, so the log level below is read when TensorFlow starts.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from . import backend, onnx_graphs
from .errors import ModelPackageError

RUNTIMES = ("auto", "onnx", "keras")
ENV_RUNTIME = "BRAINMRI_RUNTIME"

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


def import_keras():
    """Keras, loaded the first time with TensorFlow's start-up notes kept off the terminal.

    TensorFlow 2.17+ logs through absl before anything initialises absl's logging, and uninitialised absl writes every
    message to stderr whatever TF_CPP_MIN_LOG_LEVEL says: the oneDNN and CUDA-stub notes, twice, before every
    command's output. They come while the library loads, so it is loaded with the process's stderr closed; Python's
    own errors still raise after it is back. A level the user set low shows them. Raises ModelPackageError when Keras
    is not installed (the application's install runs graphs only)."""
    if "keras" not in sys.modules:
        try:
            if os.environ["TF_CPP_MIN_LOG_LEVEL"] in ("2", "3"):
                with _stderr_to_devnull():
                    import keras  # noqa: F401
            else:
                import keras  # noqa: F401
        except ImportError:
            raise ModelPackageError(None, "the Keras runtime is not installed here (this install runs packages' ONNX "
                                          "graphs; pip install 'brainmri[train]' adds Keras)") from None
    return sys.modules["keras"]


def requested() -> str:
    """The runtime asked for: BRAINMRI_RUNTIME (the command line's --runtime sets it), else auto."""
    value = os.environ.get(ENV_RUNTIME, "auto").strip().lower() or "auto"
    if value not in RUNTIMES:
        raise ModelPackageError(None, f"{ENV_RUNTIME}={value!r} is not one of {', '.join(RUNTIMES)}")
    return value


def resolve(manifest, where=None, asked: str | None = None) -> str:
    """"onnx" or "keras" for this package: the one rule. Auto takes the package's graphs when ONNX Runtime is
    installed, else Keras; asking for ONNX Runtime where the package has no graphs is an error, not a quiet switch."""
    asked = asked or requested()
    has_graphs = bool(manifest.graph_file)
    if asked == "keras":
        return "keras"
    if asked == "onnx":
        if not has_graphs:
            raise ModelPackageError(where, "has no ONNX graphs (exported before they existed): add them with "
                                           "`brainmri-train add-graphs`, or run it with --runtime keras")
        if not onnx_graphs.available():
            raise ModelPackageError(where, "needs ONNX Runtime, which is not installed (pip install onnxruntime)")
        return "onnx"
    return "onnx" if has_graphs and onnx_graphs.available() else "keras"


def default_runtime() -> str:
    """The runtime a package with graphs gets here: what the window says before any model is loaded."""
    asked = requested()
    if asked == "auto":
        return "onnx" if onnx_graphs.available() else "keras"
    return asked


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


def device_description(runtime: str | None = None) -> str:
    """The runtime and device in words, for `runtime` ("onnx"/"keras"; default: what a package with graphs gets)."""
    if (runtime or default_runtime()) == "onnx":
        return onnx_graphs.device_description()
    import_keras()
    return f"{backend.display_name()}, {accelerator() or f'CPU ({os.cpu_count()} cores)'}"
