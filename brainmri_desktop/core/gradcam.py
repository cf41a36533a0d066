"""Grad-CAM on the pre-sigmoid logit, put back on the slice's own pixel grid.

The gradient model is one flat graph from the input to the target layer and the logit. Models are built flat by the
trainer (the backbone's layers live in the same graph as the head); a backbone nested as a sub-model would make the
inner layer's output unreachable from the outer input, the classic "Graph disconnected" failure.
"""

from __future__ import annotations

import cv2
import numpy as np

from .inference import LoadedModel
from .preprocess import Preprocessed, to_model_input


class GradCAM:
    def __init__(self, model: LoadedModel):
        import keras
        import tensorflow as tf

        net = model.keras_model
        self._normalisation = model.manifest.preprocessing.model_normalisation
        grad_model = keras.Model(
            net.inputs, [net.get_layer(model.manifest.gradcam_layer).output, net.get_layer("logit").output]
        )

        # autograph off: plain TF ops, and a frozen build has no source for autograph to read
        @tf.function(reduce_retracing=True, autograph=False)
        def maps(x):
            with tf.GradientTape() as tape:
                features, logits = grad_model(x, training=False)
                tape.watch(features)
                score = tf.reduce_sum(logits)
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))

        self._maps = maps

    def input_maps(self, images: np.ndarray) -> np.ndarray:
        """Maps at model-input size (N, S, S), each scaled to [0, 1] (all zero where nothing pushes the logit up)."""
        size = images.shape[1]
        raw = np.asarray(self._maps(to_model_input(images, self._normalisation)))
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
