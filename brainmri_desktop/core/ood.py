"""Out-of-distribution score on a model's own features: how unlike its training images a slice looks to the model.

The features are the means of a few named layers over a coarse `grid` x `grid` of cells (the Grad-CAM layer and
earlier ones: early layers see texture and contrast, where stripes, noise and other modalities differ; the cells keep
a little of the layout, which a global mean loses), standardised per feature. The score
is a Mahalanobis distance under a shrinkage (Ledoit-Wolf) covariance of the training images' features, kept in a
low-rank form: the top `k` eigen-directions exactly, the remaining ones with their mean variance (probabilistic PCA).
The trainer fits it (sklearn is a trainer-only dependency) and sets `threshold` on validation so that at most 2 % of
each development source's slices fall above it; the core only scores, with numpy.

Contract for the session:

    ood = load_ood(entry.path, manifest)             # None when the package has no fit
    net = scoring_model(keras_model, ood)            # outputs [logit, the layers' maps]; any Keras backend
    logits, feats = run_scoring(net, images, normalisation, ood.grid)
    scores = ood.score(feats)                        # one distance per image; > ood.threshold is out of scope

Features come out of the same forward pass as the logit, so the guard adds only the cell means to a prediction.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import pad_batch
from .errors import ModelPackageError
from .preprocess import to_model_input

OOD_FILE = "ood.npz"
OOD_FORMAT = 1
MAX_OOD_BYTES = 64 << 20


@dataclass(frozen=True)
class OODDetector:
    layers: tuple[str, ...]  # layers whose cell means, concatenated in this order, are the features
    mean: np.ndarray  # (d,) training mean
    scale: np.ndarray  # (d,) training standard deviation (features are standardised before the distance)
    components: np.ndarray  # (d, k) leading eigenvectors of the shrunk covariance of the standardised features
    variances: np.ndarray  # (k,) their eigenvalues
    residual_variance: float  # mean eigenvalue of the other d - k directions; 0 when k == d
    threshold: float  # scores above it are out of scope
    source_out_rate: dict[str, float] = field(default_factory=dict)  # validation share above threshold, by source
    train_images: int = 0
    grid: int = 1  # cells per side over which each layer's map is averaged

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def score(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distances (N,) of pooled features (N, d)."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        proj = z @ self.components
        d2 = (proj**2 / self.variances).sum(axis=1)
        if self.residual_variance > 0:
            d2 += np.maximum((z**2).sum(axis=1) - (proj**2).sum(axis=1), 0.0) / self.residual_variance
        return np.sqrt(np.maximum(d2, 0.0))

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        sources = sorted(self.source_out_rate)
        np.savez_compressed(
            buffer, format=np.int64(OOD_FORMAT), layers=np.array(self.layers, dtype=str),
            mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
            components=self.components.astype(np.float32), variances=self.variances.astype(np.float64),
            residual_variance=np.float64(self.residual_variance), threshold=np.float64(self.threshold),
            sources=np.array(sources, dtype=str),
            out_rates=np.array([self.source_out_rate[s] for s in sources], np.float64),
            train_images=np.int64(self.train_images), grid=np.int64(self.grid))
        return buffer.getvalue()


def _read(data: bytes, where: Path) -> OODDetector:
    def bad(reason: str) -> ModelPackageError:
        return ModelPackageError(where, f"{OOD_FILE} {reason}")

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if int(z["format"]) != OOD_FORMAT:
                raise bad(f"has format {int(z['format'])}, expected {OOD_FORMAT}")
            det = OODDetector(
                layers=tuple(str(s) for s in z["layers"]), mean=z["mean"].astype(np.float64),
                scale=z["scale"].astype(np.float64), components=z["components"].astype(np.float64),
                variances=z["variances"].astype(np.float64), residual_variance=float(z["residual_variance"]),
                threshold=float(z["threshold"]),
                source_out_rate={str(s): float(r) for s, r in zip(z["sources"], z["out_rates"])},
                train_images=int(z["train_images"]), grid=int(z["grid"]))
    except ModelPackageError:
        raise
    except (ValueError, KeyError, OSError, TypeError, zipfile.BadZipFile) as exc:
        raise bad(f"cannot be read ({type(exc).__name__})") from None
    d = det.dim
    if not det.layers or det.mean.ndim != 1 or det.scale.shape != (d,) or det.components.ndim != 2 \
            or det.components.shape[0] != d or det.variances.shape != (det.components.shape[1],):
        raise bad("has inconsistent shapes")
    arrays = (det.mean, det.scale, det.components, det.variances)
    if not all(np.isfinite(a).all() for a in arrays) or not np.isfinite([det.threshold, det.residual_variance]).all():
        raise bad("holds values that are not finite")
    if not 1 <= det.grid <= 8:
        raise bad(f"has an implausible grid of {det.grid}")
    if (det.scale <= 0).any() or (det.variances <= 0).any() or det.residual_variance < 0 or det.threshold <= 0:
        raise bad("holds a variance or threshold that is not positive")
    return det


def load_ood(package: Path, manifest) -> OODDetector | None:
    """The package's fitted detector, or None when its manifest names none. The manifest's sha256 list has been
    checked by `read_package` already; this checks that the file makes sense."""
    name = getattr(manifest, "ood_file", "")
    if not name:
        return None
    path = Path(package) / name
    if not path.is_file() or path.stat().st_size > MAX_OOD_BYTES:
        raise ModelPackageError(package, f"{name} is missing or implausibly large")
    return _read(path.read_bytes(), Path(package))


def detector_from_bytes(data: bytes, where: Path) -> OODDetector:
    return _read(data, where)


def scoring_model(keras_model, layers: tuple[str, ...] | OODDetector):
    """A Keras model with the `logit` layer's output followed by the maps of `layers`, built on the model's own
    graph: one forward pass gives both, under any Keras backend."""
    import keras

    names = layers.layers if isinstance(layers, OODDetector) else tuple(layers)
    try:
        maps = [keras_model.get_layer(n).output for n in names]
    except ValueError as exc:
        raise ModelPackageError(None, f"the out-of-distribution fit names a layer the model lacks ({exc})") from None
    return keras.Model(keras_model.input, [keras_model.get_layer("logit").output, *maps])


def grid_means(maps: np.ndarray, grid: int) -> np.ndarray:
    """(N, H, W, C) maps as (N, grid * grid * C) cell means, cells in row order (uneven cells where H or W does not
    divide); (N, C) outputs pass through."""
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 2:
        return maps
    rows = np.array_split(np.arange(maps.shape[1]), grid)
    cols = np.array_split(np.arange(maps.shape[2]), grid)
    cells = [maps[:, r[0] : r[-1] + 1, c[0] : c[-1] + 1].mean(axis=(1, 2)) for r in rows for c in cols]
    return np.concatenate(cells, axis=1)


def run_scoring(net, images: np.ndarray, normalisation: str, grid: int = 1,
                batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits (N,) and features (N, d) for preprocessed [0, 1] images (N, S, S). Batches are padded as
    `backend.pad_batch` pads them, so that XLA compiles a handful of batch sizes, not one per size."""
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size], normalisation)
        out = [np.asarray(o)[: len(x)] for o in net.predict_on_batch(pad_batch(x, net.jit_compile))]
        logits.append(np.asarray(out[0], np.float32).reshape(-1))
        feats.append(np.concatenate([grid_means(m, grid) for m in out[1:]], axis=1))
    if not logits:
        return np.zeros(0, np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(feats)
