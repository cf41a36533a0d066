"""The plane a slice was cut in, read from its pixels, for slices whose headers cannot say (a PNG or JPEG).

The models were trained on axial slices. A DICOM slice's orientation header settles its plane (core/scope.py); a
picture saved without one (a sagittal or coronal slice exported as PNG) would otherwise be triaged as if axial, and
the models flag 80-92 % of resliced sagittal and coronal LGG slices. This classifier tells axial, sagittal and
coronal apart from the head as the preprocessing contract crops it (square, the aspect kept, intensity scaled inside
the head) at 32 px: three 3x3 convolutions (16, 32, 64 channels, each with ReLU and 2x2 max pooling) and a softmax
layer, 26 k weights (`resources/plane/plane.npz`, trained by `brainmri-train plane`) run as a numpy forward pass, so
neither TensorFlow nor ONNX Runtime is needed for it. A slice is called non-axial only when its axial probability falls
under the stored threshold, set on validation slices of the axial development sources so that at most 1 % of each
source's fall under it.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelPackageError
from .packages import bundled_models_dir
from .preprocess import PreprocessSpec, preprocess_values

PLANES = ("axial", "sagittal", "coronal")
# Shape and the main structures are what tell planes apart; 32 px keeps them and makes the forward pass a few
# thousand multiply-adds per hidden unit. No scalp stripped, percentiles: the plane does not depend on a model's choice.
INPUT_SPEC = PreprocessSpec(input_size=32, model_normalisation="unit")


def plane_file() -> Path:
    return bundled_models_dir().parent / "plane" / "plane.npz"


def plane_input(values: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """The classifier's input for a slice's pixel values: (32, 32) float32 in [0, 1]."""
    return preprocess_values(values, window, INPUT_SPEC).image


def _conv_relu_pool(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras' Conv2D(padding="same") (a cross-correlation), ReLU, then MaxPooling2D(2), on (N, H, W, C)."""
    n, h, w, _c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[3]), np.float32)
    for dy in range(3):
        for dx in range(3):
            out += padded[:, dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
    out = np.maximum(out + bias, 0.0)
    return out.reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))


@dataclass(frozen=True)
class PlaneClassifier:
    """The network's weights as Keras stores them; `probabilities` is its forward pass."""

    kernels: tuple[np.ndarray, ...]  # (3, 3, in, out) each
    biases: tuple[np.ndarray, ...]
    dense_w: np.ndarray  # (flattened H x W x C, 3)
    dense_b: np.ndarray
    min_axial: float  # an axial probability under this calls the slice non-axial

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, 3) probabilities of PLANES for (N, 32, 32) inputs."""
        x = np.asarray(images, np.float32)[..., None]
        for kernel, bias in zip(self.kernels, self.biases):
            x = _conv_relu_pool(x, kernel, bias)
        z = x.reshape(len(x), -1) @ self.dense_w + self.dense_b
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def plane(self, image: np.ndarray) -> tuple[str, float]:
        """The plane of one input and the probability behind the call: "axial" unless its axial probability is
        under `min_axial`, else the likelier of sagittal and coronal."""
        p = self.probabilities(image[None])[0]
        if p[0] >= self.min_axial:
            return "axial", float(p[0])
        k = 1 + int(np.argmax(p[1:]))
        return PLANES[k], float(p[k])

    def to_bytes(self) -> bytes:
        arrays = {f"kernel{i}": k for i, k in enumerate(self.kernels)}
        arrays |= {f"bias{i}": b for i, b in enumerate(self.biases)}
        buf = io.BytesIO()
        np.savez_compressed(buf, dense_w=self.dense_w, dense_b=self.dense_b, min_axial=np.float32(self.min_axial),
                            **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
        return buf.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> PlaneClassifier:
        """Raises ModelPackageError naming the file when it is missing, unreadable or not this classifier."""
        try:
            with np.load(path, allow_pickle=False) as z:
                layers = sum(1 for name in z.files if name.startswith("kernel"))
                found = cls(tuple(z[f"kernel{i}"].astype(np.float32) for i in range(layers)),
                            tuple(z[f"bias{i}"].astype(np.float32) for i in range(layers)),
                            z["dense_w"].astype(np.float32), z["dense_b"].astype(np.float32), float(z["min_axial"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelPackageError(path, f"not a plane classifier ({exc})") from exc
        side = INPUT_SPEC.input_size // 2 ** len(found.kernels)
        if not found.kernels or found.dense_w.shape != (side * side * found.kernels[-1].shape[3], len(PLANES)):
            raise ModelPackageError(path, f"plane classifier of the wrong shape (expects {INPUT_SPEC.input_size} px "
                                          f"inputs and {len(PLANES)} planes)")
        return found


@functools.cache
def bundled_classifier() -> PlaneClassifier:
    """The classifier shipped in resources/ (read once: it is the same for every model and slice)."""
    return PlaneClassifier.from_file(plane_file())
