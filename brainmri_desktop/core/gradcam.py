"""Grad-CAM on the pre-sigmoid logit, put back on the slice's own pixel grid, on any Keras backend or from a package's
exported Grad-CAM graph under ONNX Runtime (core/onnx_graphs.py; the trainer writes that graph with `grad_cam` below).

The model is cut at the target layer into two Keras models that share its layers: the features (input -> target
layer) and the head (target layer's output, plus the image for any path that bypasses the layer -> logit). The
gradient of the logit with respect to the features is then a gradient with respect to a model *input*, which every
backend can take: one small function each (TensorFlow's GradientTape, jax.grad, torch autograd). The rest is shared:
channel weights = mean gradient and the ReLU of the weighted sum in Keras ops (inside each compiled function), the
scaling to [0, 1] and the resize in NumPy and OpenCV.

Models are built flat by the trainer (the backbone's layers live in the same graph as the head); a backbone nested as
a sub-model would make the inner layer's output unreachable from the outer input, the classic "Graph disconnected".
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from . import backend
from .inference import LoadedModel
from .preprocess import Preprocessed, to_model_input

# image batch -> raw maps at the target layer's resolution (N, h, w), float32 NumPy
RawMaps = Callable[[np.ndarray], np.ndarray]


def grad_cam(features, gradients):
    """Grad-CAM's meaning, in Keras ops so that it runs inside each backend's compiled function: channel weights are
    the mean gradient over the map, and the map is the ReLU of the weighted sum of the channels."""
    from keras import ops

    weights = ops.mean(gradients, axis=(1, 2), keepdims=True)
    return ops.relu(ops.sum(weights * features, axis=-1))


def _tensorflow_maps(features_model, head) -> RawMaps:
    import tensorflow as tf

    # autograph off: plain TF ops, and a frozen build has no source for autograph to read
    @tf.function(reduce_retracing=True, autograph=False)
    def maps(x):
        features = features_model(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(features)
            score = tf.reduce_sum(head([x, features], training=False))
        return grad_cam(features, tape.gradient(score, features))

    return lambda x: maps(tf.constant(x)).numpy()


def _jax_maps(features_model, head) -> RawMaps:
    import jax

    def call(model, weights, inputs):
        outputs, _ = model.stateless_call(*weights, inputs, training=False)
        return outputs

    @jax.jit
    def maps(x, feature_weights, head_weights):
        features = call(features_model, feature_weights, x)
        gradient = jax.grad(lambda f: jax.numpy.sum(call(head, head_weights, [x, f]).astype("float32")))
        return grad_cam(features, gradient(features))

    def run(x):
        # the weights go in as arguments, not as constants baked into the compiled function, so a model that is
        # still training is read as it is now
        weights = [([v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables])
                   for m in (features_model, head)]
        return np.asarray(maps(x, *weights))

    return run


def _torch_maps(features_model, head) -> RawMaps:
    import keras
    import torch

    def run(x):
        x = keras.ops.convert_to_tensor(x)
        with torch.no_grad():
            features = features_model(x, training=False)
        features = features.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(head([x, features], training=False).float().sum(), features)
        return grad_cam(features.detach(), gradient).cpu().numpy()

    return run


BACKENDS: dict[str, Callable[[object, object], RawMaps]] = {
    "tensorflow": _tensorflow_maps,
    "jax": _jax_maps,
    "torch": _torch_maps,
}


def raw_maps(features_model, head) -> RawMaps:
    """Grad-CAM through the backend Keras runs on: only the gradient differs between backends."""
    try:
        make = BACKENDS[backend.name()]
    except KeyError:
        raise RuntimeError(f"Grad-CAM has no gradient for the Keras backend {backend.name()!r}") from None
    return make(features_model, head)


class GradCAM:
    def __init__(self, model: LoadedModel):
        self._normalisation = model.manifest.preprocessing.model_normalisation
        if model.graphs is not None:  # the package's exported Grad-CAM graph (core/onnx_graphs.py)
            self._maps, self._compiled_per_shape = model.graphs.cams, False
            return
        import keras

        net = model.keras_model
        target = net.get_layer(model.manifest.gradcam_layer).output
        features_model = keras.Model(net.input, target)
        self._compiled_per_shape = features_model.jit_compile
        head = keras.Model([net.input, target], net.get_layer("logit").output)
        self._maps = raw_maps(features_model, head)

    def _raw_maps(self, x: np.ndarray) -> np.ndarray:
        """ReLU of the gradient-weighted feature channels, at the target layer's resolution (N, h, w)."""
        maps = self._maps(backend.pad_batch(x, self._compiled_per_shape))
        return np.asarray(maps, dtype=np.float32)[: len(x)]

    def cell_maps(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Unscaled maps on the target layer's own grid (N, h, w) for preprocessed [0, 1] images (N, S, S): one value
        per cell, as the layer sees the slice, for measures that rank cells (the trainer's deletion test)."""
        return np.concatenate([self._raw_maps(to_model_input(images[i:i + batch_size], self._normalisation))
                               for i in range(0, len(images), batch_size)])

    def input_maps(self, images: np.ndarray) -> np.ndarray:
        """Maps at model-input size (N, S, S), each scaled to [0, 1] (all zero where nothing pushes the logit up)."""
        size = images.shape[1]
        raw = self._raw_maps(to_model_input(images, self._normalisation))
        out = np.zeros((len(images), size, size), dtype=np.float32)
        for i, cam in enumerate(raw):
            peak = float(cam.max())
            if peak > 0 and np.isfinite(peak):
                out[i] = cv2.resize(cam / peak, (size, size), interpolation=cv2.INTER_LINEAR)
        return np.clip(out, 0.0, 1.0)

    def slice_maps(self, inputs: list[Preprocessed]) -> list[np.ndarray]:
        """Maps on each slice's own grid (its height and width), values in [0, 1]."""
        if not inputs:
            return []
        maps = self.input_maps(np.stack([p.image for p in inputs]))
        return [np.clip(p.geometry.to_source(m), 0.0, 1.0) for p, m in zip(inputs, maps)]
