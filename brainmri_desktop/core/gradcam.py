"""Grad-CAM on the pre-sigmoid logit, put back on the slice's own pixel grid, on any Keras backend.

The model is cut at the target layer into two Keras models that share its layers: the features (input -> target
layer) and the head (target layer's output, plus the image for any path that bypasses the layer -> logit). The
gradient of the logit with respect to the features is then a gradient with respect to a model *input*, which every
backend can take: one small function each (TensorFlow's GradientTape, jax.grad, torch autograd). The rest (channel
weights = mean gradient, ReLU of the weighted sum, scaled to [0, 1]) is NumPy, the same for all.

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

# (image batch, features) -> d sum(logits) / d features, as float32 NumPy
FeatureGradient = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _tensorflow_gradient(head) -> FeatureGradient:
    import tensorflow as tf

    # autograph off: plain TF ops, and a frozen build has no source for autograph to read
    @tf.function(reduce_retracing=True, autograph=False)
    def gradient(x, features):
        with tf.GradientTape() as tape:
            tape.watch(features)
            score = tf.reduce_sum(head([x, features], training=False))
        return tape.gradient(score, features)

    return lambda x, features: gradient(tf.constant(x), tf.constant(features)).numpy()


def _jax_gradient(head) -> FeatureGradient:
    import jax

    def score(features, x, trainable, non_trainable):
        logits, _ = head.stateless_call(trainable, non_trainable, [x, features], training=False)
        return jax.numpy.sum(logits.astype("float32"))

    gradient = jax.jit(jax.grad(score))

    def run(x, features):
        # the weights go in as arguments, not constants baked into the compiled function, so a model that is still
        # training is read as it is now
        trainable = [v.value for v in head.trainable_variables]
        non_trainable = [v.value for v in head.non_trainable_variables]
        return np.asarray(gradient(features, x, trainable, non_trainable))

    return run


def _torch_gradient(head) -> FeatureGradient:
    import keras
    import torch

    def run(x, features):
        features = keras.ops.convert_to_tensor(features).requires_grad_(True)
        logits = head([keras.ops.convert_to_tensor(x), features], training=False)
        (gradient,) = torch.autograd.grad(logits.float().sum(), features)
        return gradient.detach().cpu().numpy()

    return run


GRADIENTS: dict[str, Callable[[object], FeatureGradient]] = {
    "tensorflow": _tensorflow_gradient,
    "jax": _jax_gradient,
    "torch": _torch_gradient,
}


def feature_gradient(head) -> FeatureGradient:
    try:
        return GRADIENTS[backend.name()](head)
    except KeyError:
        raise RuntimeError(f"Grad-CAM has no gradient for the Keras backend {backend.name()!r}") from None


class GradCAM:
    def __init__(self, model: LoadedModel):
        import keras

        net = model.keras_model
        self._normalisation = model.manifest.preprocessing.model_normalisation
        target = net.get_layer(model.manifest.gradcam_layer).output
        self._features_model = keras.Model(net.input, target)
        self._features = backend.forward(self._features_model)
        self._gradient = feature_gradient(keras.Model([net.input, target], net.get_layer("logit").output))

    def _raw_maps(self, x: np.ndarray) -> np.ndarray:
        """ReLU of the gradient-weighted feature channels, at the target layer's resolution (N, h, w)."""
        n = len(x)
        x = backend.pad_batch(x, self._features_model.jit_compile)
        features = self._features(x)
        gradients = np.asarray(self._gradient(x, features), dtype=np.float32)
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        return np.maximum((weights * features).sum(axis=-1), 0.0)[:n]

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
