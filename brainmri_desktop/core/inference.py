"""Batched prediction with test-time augmentation, temperature scaling and the decision threshold.

Augmented logits are averaged in logit space, calibrated (temperature and bias), then turned into a probability.
Adaptive TTA spends the extra augmentations only on slices whose first (identity) logit lies near the threshold:
far from it, more views cannot change the decision, and a 384-slice study stays fast on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .augment import TTA_ORDER, apply_tta
from .errors import CancelledError, ModelPackageError
from .manifest import Manifest, OperatingPoint
from .packages import ModelEntry, load_keras_model
from .preprocess import Preprocessed, to_model_input

NO_HEAD_FRACTION = 0.01


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


@dataclass(frozen=True)
class TTAConfig:
    count: int = 1
    adaptive: bool = True
    margin: float = 2.0  # in calibrated-logit units around the threshold; 2.0 is roughly p in [0.12, 0.88] at t=0.5

    def __post_init__(self) -> None:
        if not 1 <= self.count <= len(TTA_ORDER):
            raise ValueError(f"TTA count must be between 1 and {len(TTA_ORDER)}")

    @property
    def transforms(self) -> tuple[str, ...]:
        return TTA_ORDER[: self.count]


@dataclass(frozen=True)
class SliceResult:
    index: int
    probability: float  # calibrated; the mean of the augmented logits, through the temperature
    tta_std: float  # spread of the calibrated probabilities across the augmentations used
    p_low: float
    p_high: float
    augmentations: int
    threshold: float
    head_fraction: float

    @property
    def flagged(self) -> bool:
        return self.probability >= self.threshold

    @property
    def second_look(self) -> bool:
        """The augmentations disagree about the side of the threshold: no confident answer either way."""
        return self.p_low < self.threshold <= self.p_high

    @property
    def no_head(self) -> bool:
        return self.head_fraction < NO_HEAD_FRACTION


@dataclass
class LoadedModel:
    entry: ModelEntry
    manifest: Manifest
    keras_model: object = field(repr=False)
    _logit_fn: object = field(default=None, repr=False)

    @classmethod
    def load(cls, entry: ModelEntry) -> "LoadedModel":
        if entry.manifest is None:
            raise entry.error or ModelPackageError(entry.path, "not a usable package")
        return cls(entry, entry.manifest, load_keras_model(entry.path, entry.manifest))

    @property
    def id(self) -> str:
        return self.manifest.id

    def logits(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Raw (uncalibrated) logits for a batch of preprocessed [0,1] images (N, S, S)."""
        if self._logit_fn is None:
            self._logit_fn = logit_function(self.keras_model)
        return run_logits(self._logit_fn, images, self.manifest.preprocessing.model_normalisation, batch_size)


def logit_function(keras_model):
    """A compiled function from model input to the `logit` layer's output."""
    import keras
    import tensorflow as tf

    head = keras.Model(keras_model.inputs, keras_model.get_layer("logit").output)
    return tf.function(lambda x: head(x, training=False), reduce_retracing=True, autograph=False)


def run_logits(fn, images: np.ndarray, normalisation: str, batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size], normalisation)
        out.append(np.asarray(fn(x)).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
OnResult = Callable[[SliceResult], None]


def _result(index: int, raw: np.ndarray, manifest: Manifest, threshold: float, head: float) -> SliceResult:
    calibrated = manifest.calibrated_logit(np.asarray(raw, dtype=np.float64))
    per_view = sigmoid(calibrated)
    return SliceResult(
        index=index,
        probability=float(sigmoid(calibrated.mean())),
        tta_std=float(per_view.std()),
        p_low=float(per_view.min()),
        p_high=float(per_view.max()),
        augmentations=len(raw),
        threshold=threshold,
        head_fraction=head,
    )


def predict(
    model: LoadedModel,
    inputs: Sequence[Preprocessed],
    tta: TTAConfig | None = None,
    point: OperatingPoint | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    on_result: OnResult | None = None,
) -> list[SliceResult]:
    """Results for every input, in input order. `on_result` sees each slice as soon as its answer is final."""
    manifest = model.manifest
    tta = tta or TTAConfig(count=manifest.default_tta)
    point = point or manifest.threshold
    threshold = point.threshold
    n = len(inputs)
    views: list[list[float]] = [[] for _ in range(n)]
    heads = [p.head_fraction for p in inputs]
    stack = np.stack([p.image for p in inputs]) if n else np.zeros((0, 1, 1), np.float32)

    def check() -> None:
        if cancel is not None and cancel():
            raise CancelledError()

    def needs_more(i: int) -> bool:
        if tta.count == 1 or heads[i] < NO_HEAD_FRACTION:
            return False
        return not tta.adaptive or abs(manifest.calibrated_logit(views[i][0]) - logit(threshold)) < tta.margin

    results: list[SliceResult | None] = [None] * n
    done = 0

    def finish(i: int) -> None:
        nonlocal done
        results[i] = _result(i, np.array(views[i]), manifest, threshold, heads[i])
        done += 1
        if on_result:
            on_result(results[i])

    for start in range(0, n, batch_size):
        check()
        raw = model.logits(stack[start : start + batch_size], batch_size)
        for i, value in enumerate(raw, start):
            views[i].append(float(value))
            if not needs_more(i):
                finish(i)
        if progress:
            progress(done, n)
    pending = [i for i in range(n) if results[i] is None]
    for start in range(0, len(pending), batch_size):
        check()
        chunk = pending[start : start + batch_size]
        images = stack[chunk]
        for name in tta.transforms[1:]:
            for i, value in zip(chunk, model.logits(apply_tta(images, name), batch_size)):
                views[i].append(float(value))
        for i in chunk:
            finish(i)
        if progress:
            progress(done, n)
    return [r for r in results if r is not None]


def validation_auc(manifest: Manifest) -> float:
    auc = (manifest.metrics.get("validation") or {}).get("auc")
    value = auc.get("value") if isinstance(auc, dict) else auc
    return float(value) if isinstance(value, (int, float)) else 0.0


def pointing_scores(metrics: dict) -> dict[str, dict]:
    """The Grad-CAM pointing game the trainer measured, by source: {source: {"n": slices, "pointing_game": share}},
    only the sources with a figure."""
    return {source: v for source, v in sorted((metrics.get("gradcam") or {}).items())
            if isinstance(v, dict) and isinstance(v.get("pointing_game"), (int, float))}


def gradcam_points_at_tumours(manifest: Manifest, share: float = 0.5) -> bool:
    """Whether the trainer measured this model's Grad-CAM peak inside the tumour on at least `share` of the outlined
    validation slices of every source it scored (the pointing game in the model card)."""
    scores = [v["pointing_game"] for v in pointing_scores(manifest.metrics).values()]
    return bool(scores) and min(scores) >= share


def find_model(entries: Sequence[ModelEntry], model_id: str | None) -> ModelEntry:
    """The entry with this id, or the default: a bundled model whose Grad-CAM was measured to point at tumours (the
    window shows that map beside every slice, and a map that points elsewhere misleads the reader), then the best
    validation AUC its trainer measured (a model's architecture says nothing about how well it was trained), then any
    usable model."""
    usable = [e for e in entries if e.ok]
    if model_id:
        for e in usable:
            if e.manifest.id == model_id:
                return e
        raise ModelPackageError(Path(model_id), "no usable model with this id (see `brainmri models`)")
    if not usable:
        raise ModelPackageError(None, "no usable model package was found")
    usable.sort(key=lambda e: (e.source != "bundled", not gradcam_points_at_tumours(e.manifest),
                               -validation_auc(e.manifest), e.manifest.id))
    return usable[0]
