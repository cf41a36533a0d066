"""The graph that trains: uint8 single-channel batches in, the model's normalisation on the device, optional mixed
precision; and the float32 classifier that leaves training.

Batches travel as uint8 (B, S, S, 1), a twelfth of the float32 three-channel input, and are normalised inside the
compiled step: on a GPU the host no longer builds and copies float32 batches. The classifier that is saved and
exported still takes the core's `to_model_input` float input; the wrapper only exists while training.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from brainmri_desktop.core.preprocess import to_model_input

PRECISIONS = ("float32", "mixed_bfloat16")
# Layers whose output feeds a loss: computed in float32 under mixed precision, so the loss sees full-precision values.
FLOAT32_OUTPUTS = ("logit", "prob", "lesion", "cell_logit")


def input_affine(normalisation: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, offset) such that to_model_input(u) == u * scale + offset for u in [0, 1]: read off the
    core's own function, so the rule has one owner."""
    zero = to_model_input(np.zeros((1, 1, 1), np.float32), normalisation).reshape(-1)
    one = to_model_input(np.ones((1, 1, 1), np.float32), normalisation).reshape(-1)
    return (one - zero).astype(np.float32), zero.astype(np.float32)


def uint8_trainee(trainee, normalisation: str):
    """`trainee` behind an input layer that takes uint8 (B, S, S, 1) and applies the model's normalisation."""
    import keras

    scale, offset = input_affine(normalisation)

    class DeviceNormalisation(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(dtype="float32", **kwargs)

        def call(self, x):
            # (B, S, S, 1) * (3,) broadcasts to the three channels the backbone expects.
            return keras.ops.cast(x, "float32") * (scale / 255.0) + offset

    inputs = keras.Input((None, None, 1), dtype="uint8", name="image_uint8")
    outputs = trainee(DeviceNormalisation(name="device_normalisation")(inputs))
    return keras.Model(inputs, outputs, name=f"{trainee.name}_uint8")


@contextmanager
def precision(name: str):
    """Models built inside use this dtype policy; the global policy is float32 again afterwards."""
    import keras

    keras.mixed_precision.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def keep_outputs_float32(model) -> None:
    for name in FLOAT32_OUTPUTS:
        try:
            model.get_layer(name).dtype_policy = "float32"
        except ValueError:
            continue


def float32_copy(model, build_float32):
    """The same classifier under the float32 policy (what is saved and exported), with `model`'s weights."""
    clean = build_float32()
    for layer in clean.layers:
        weights = model.get_layer(layer.name).get_weights()
        if weights:
            layer.set_weights(weights)
    return clean


def hardware() -> dict:
    """The Keras backend and the device it computes on (the core's words, e.g. "JAX, GPU (NVIDIA H200)"), and the
    CPU cores that fed it, as a run records them for its manifest and model card."""
    import os

    from brainmri_desktop.core import backend, runtime

    return {"backend": backend.name(), "device": runtime.device_description("keras"), "cpu_cores": os.cpu_count()}
