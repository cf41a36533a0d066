"""What differs between the Keras backends (TensorFlow, JAX, PyTorch) that the core needs: the backend's name and a
compiled forward pass through Keras itself. Grad-CAM's gradient, the one step Keras has no API for, is in gradcam.py.

Keras fixes the backend once per process: KERAS_BACKEND, else ~/.keras/keras.json, else TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DISPLAY_NAMES = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}


def name() -> str:
    from .runtime import import_keras

    return import_keras().config.backend()


def display_name() -> str:
    return DISPLAY_NAMES.get(name(), name())


def pad_batch(x: np.ndarray, compiled_per_shape: bool) -> np.ndarray:
    """The batch padded with blank images to the next power of two where the backend compiles once per input shape
    (XLA: always under JAX, on a GPU under TensorFlow): a study's many batch sizes then cost at most a handful of
    compilations (seconds each for the ResNet50 on a CPU), not one per size. Inference treats images independently,
    so the padding changes nothing for the real ones."""
    n = len(x)
    size = 1 << max(n - 1, 0).bit_length()
    if not compiled_per_shape or size == n:
        return x
    return np.concatenate([x, np.zeros((size - n, *x.shape[1:]), dtype=x.dtype)])


def forward(model) -> Callable[[np.ndarray], np.ndarray]:
    """The model's output for a batch as float32, through Keras' own compiled predict step (a tf.function under
    TensorFlow, jax.jit under JAX, eager under PyTorch); the model's current weights are read on every call."""

    def run(x: np.ndarray) -> np.ndarray:
        padded = pad_batch(x, model.jit_compile)
        return np.asarray(model.predict_on_batch(padded), dtype=np.float32)[: len(x)]

    return run
