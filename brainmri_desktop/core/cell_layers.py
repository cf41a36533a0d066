"""The two layers that make a model's score a reading of its per-cell map of where (issue 27).

`HeadCells` marks which cells of a feature grid lie inside the head, from the image the model is given: the
preprocessing sets everything outside the head to the background value, so a cell is inside when enough of its pixels
differ from it. `MaskedLogSumExp` pools the per-cell tumour logits of the cells inside the head into the image logit,
with a learnt sharpness: a smooth maximum, so one confident cell can carry the score, and a cell outside the head has
no say. They live in the core because packages name them and the core loads packages; the trainer only builds them.
Both are plain Keras ops, so they run on every backend and export to ONNX.
"""

from __future__ import annotations

import keras
from keras import ops

# A cell counts as inside the head when at least this share of its pixels is head. A quarter keeps the cells along
# the head's border, where a tumour touching the skull lies, and drops those that only graze it.
INSIDE_SHARE = 0.25


@keras.saving.register_keras_serializable(package="brainmri")
class HeadCells(keras.layers.Layer):
    """(N, H, W, 3) model input -> (N, H / stride, W / stride, 1) of 0 / 1: the cells inside the head.

    `background` is the model input's value for a pixel that preprocessing blanked (0 for the unit normalisation, the
    negated channel means for the ResNet50's); `padding` follows how the backbone rounds odd sizes ("same": ceil, as
    the ResNet50's strided stages; "valid": floor, as the CNN's max pooling)."""

    def __init__(self, stride: int, background=(0.0, 0.0, 0.0), padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        self.stride = int(stride)
        self.background = tuple(float(v) for v in background)
        self.padding = padding
        self._pool = keras.layers.AveragePooling2D(self.stride, self.stride, padding=padding, dtype="float32")

    def call(self, image):
        image = ops.cast(image, "float32")
        distance = ops.max(ops.abs(image - ops.convert_to_tensor(self.background, "float32")), axis=-1, keepdims=True)
        head = ops.cast(distance > 1e-3, "float32")
        return ops.cast(self._pool(head) >= INSIDE_SHARE, "float32")

    def compute_output_shape(self, input_shape):
        return self._pool.compute_output_shape(tuple(input_shape[:-1]) + (1,))

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "background": list(self.background),
                "padding": self.padding}


@keras.saving.register_keras_serializable(package="brainmri")
class MaskedLogSumExp(keras.layers.Layer):
    """[cell logits (N, h, w, 1), inside (N, h, w, 1)] -> image logit (N, 1):
    (1/r) log(mean over inside cells of exp(r z)), with r = softplus(learnt) + 0.1.

    The mean (not the sum) keeps a large head from scoring higher than a small one for the same cells. A slice with no
    cell inside (no head at all: preprocessing then keeps the whole image) is pooled over every cell."""

    def __init__(self, sharpness: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.sharpness = float(sharpness)

    def build(self, input_shape):
        # softplus^-1(r - 0.1): the stored variable starts at the configured sharpness
        start = self.sharpness - 0.1
        raw = start + float(ops.convert_to_numpy(ops.log(-ops.expm1(-ops.convert_to_tensor(start)))))
        self.raw_sharpness = self.add_weight(shape=(), initializer=keras.initializers.Constant(raw),
                                             name="raw_sharpness", dtype="float32")

    def call(self, inputs):
        z, inside = (ops.cast(t, "float32") for t in inputs)
        r = ops.softplus(self.raw_sharpness) + 0.1
        count = ops.sum(inside, axis=(1, 2, 3), keepdims=True)
        inside = ops.where(count > 0, inside, ops.ones_like(inside))
        count = ops.sum(inside, axis=(1, 2, 3))
        scaled = ops.where(inside > 0, r * z, ops.full_like(z, -1e9))
        peak = ops.max(scaled, axis=(1, 2, 3), keepdims=True)
        total = ops.sum(ops.exp(scaled - peak) * inside, axis=(1, 2, 3))
        lse = ops.squeeze(peak, axis=(1, 2, 3)) + ops.log(total)
        return ops.expand_dims((lse - ops.log(count)) / r, -1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "sharpness": self.sharpness}
