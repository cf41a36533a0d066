"""Batched prediction with test-time augmentation and temperature scaling.

Augmented logits are averaged in logit space, calibrated (temperature and bias), then turned into a probability.
Adaptive TTA spends the extra augmentations only on slices whose first (identity) logit lies near the threshold:
far from it, more views cannot change the decision, and a 384-slice study stays fast on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import backend, runtime
from .augment import MAX_TTA, TTA_ORDER, apply_tta
from .errors import CancelledError, ModelPackageError
from .manifest import Manifest, OperatingPoint
from .ood import OODDetector, load_ood, run_scoring, scoring_model
from .onnx_graphs import OnnxGraphs
from .packages import ModelEntry, load_keras_model
from .preprocess import Preprocessed, has_head, to_model_input


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
        if not 1 <= self.count <= MAX_TTA:
            raise ValueError(f"TTA count must be between 1 and {MAX_TTA}")

    @property
    def transforms(self) -> tuple[str, ...]:
        return TTA_ORDER[: self.count]


@dataclass(frozen=True)
class SliceResult:
    """What the model said about one slice. No decision: flagging is the operating point's (core.session.decide)."""

    index: int
    probability: float  # calibrated; the mean of the augmented logits, through the temperature
    tta_std: float  # spread of the calibrated probabilities across the augmentations used
    p_low: float
    p_high: float
    augmentations: int
    head_fraction: float
    ood_score: float | None = None  # the scope guard's distance (core/ood.py) of the identity view; None: no fit

    @property
    def no_head(self) -> bool:
        return not has_head(self.head_fraction)


@dataclass
class LoadedModel:
    """A package ready to compute: its ONNX graphs under ONNX Runtime (`graphs`), or its Keras model (`keras_model`),
    as core.runtime.resolve decides; every caller asks the same questions of either."""

    entry: ModelEntry
    manifest: Manifest
    keras_model: object = field(default=None, repr=False)
    ood: OODDetector | None = field(default=None, repr=False)  # the package's scope fit, when it has one
    graphs: OnnxGraphs | None = field(default=None, repr=False)
    _logit_fn: object = field(default=None, repr=False)
    _scoring: object = field(default=None, repr=False)

    @classmethod
    def load(cls, entry: ModelEntry, asked: str | None = None) -> "LoadedModel":
        """The package on the runtime `asked` ("auto", "onnx", "keras"; default: core.runtime.requested())."""
        if entry.manifest is None:
            raise entry.error or ModelPackageError(entry.path, "not a usable package")
        manifest = entry.manifest
        ood = load_ood(entry.path, manifest)
        if runtime.resolve(manifest, entry.path, asked) == "onnx":
            return cls(entry, manifest, ood=ood, graphs=OnnxGraphs.load(entry.path, manifest, ood))
        return cls(entry, manifest, load_keras_model(entry.path, manifest), ood)

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def runtime(self) -> str:
        return "onnx" if self.graphs is not None else "keras"

    @property
    def device(self) -> str:
        """Where this model computes, in words ("ONNX Runtime, CPU (2 cores)")."""
        return runtime.device_description(self.runtime)

    def logits(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Raw (uncalibrated) logits for a batch of preprocessed [0,1] images (N, S, S)."""
        if self._logit_fn is None:
            self._logit_fn = self.graphs.logits if self.graphs is not None else logit_function(self.keras_model)
        return run_logits(self._logit_fn, images, self.manifest.preprocessing.model_normalisation, batch_size)

    def scored_logits(self, images: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw logits and, when the package has a scope fit, each image's out-of-distribution score, from one
        forward pass (the fit's layer maps are outputs of the same model); (logits, None) without a fit."""
        if self.ood is None:
            return self.logits(images, batch_size), None
        if self._scoring is None:
            self._scoring = (GraphScoring(self.graphs, self.ood.layers) if self.graphs is not None
                             else scoring_model(self.keras_model, self.ood))
        raw, feats = run_scoring(self._scoring, images, self.manifest.preprocessing.model_normalisation,
                                 self.ood.grid, batch_size)
        return raw, self.ood.score(feats)


@dataclass(frozen=True)
class GraphScoring:
    """The model graph answering as `ood.scoring_model`'s Keras model does: [logit, the scope layers' features]
    (cell means already: `ood.grid_means` passes them through)."""

    graphs: OnnxGraphs
    layers: tuple[str, ...]
    jit_compile = False  # ONNX Runtime takes any batch size without compiling again: no padding

    def predict_on_batch(self, x: np.ndarray) -> list[np.ndarray]:
        logits, maps = self.graphs.scored(x, self.layers)
        return [logits[:, None], *maps]


def logit_function(keras_model):
    """A compiled function, on any Keras backend, from model input to the `logit` layer's output."""
    import keras

    return backend.forward(keras.Model(keras_model.input, keras_model.get_layer("logit").output))


def run_logits(fn, images: np.ndarray, normalisation: str, batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size], normalisation)
        out.append(np.asarray(fn(x), dtype=np.float32).reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
OnResult = Callable[[SliceResult], None]


def _result(index: int, raw: np.ndarray, manifest: Manifest, head: float, ood_score: float | None) -> SliceResult:
    calibrated = manifest.calibrated_logit(np.asarray(raw, dtype=np.float64))
    per_view = sigmoid(calibrated)
    return SliceResult(
        index=index,
        probability=float(sigmoid(calibrated.mean())),
        tta_std=float(per_view.std()),
        p_low=float(per_view.min()),
        p_high=float(per_view.max()),
        augmentations=len(raw),
        head_fraction=head,
        ood_score=ood_score,
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
    """Results for every input, in input order. `on_result` sees each slice as soon as its answer is final. The
    operating point only steers adaptive TTA (extra views near its threshold); it decides nothing."""
    manifest = model.manifest
    tta = tta or TTAConfig(count=manifest.default_tta)
    point = point or manifest.threshold
    threshold = point.threshold
    n = len(inputs)
    views: list[list[float]] = [[] for _ in range(n)]
    scores: list[float | None] = [None] * n
    heads = [p.head_fraction for p in inputs]
    stack = np.stack([p.image for p in inputs]) if n else np.zeros((0, 1, 1), np.float32)

    def check() -> None:
        if cancel is not None and cancel():
            raise CancelledError()

    def needs_more(i: int) -> bool:
        if tta.count == 1 or not has_head(heads[i]):
            return False
        return not tta.adaptive or abs(manifest.calibrated_logit(views[i][0]) - logit(threshold)) < tta.margin

    results: list[SliceResult | None] = [None] * n
    done = 0

    def finish(i: int) -> None:
        nonlocal done
        results[i] = _result(i, np.array(views[i]), manifest, heads[i], scores[i])
        done += 1
        if on_result:
            on_result(results[i])

    for start in range(0, n, batch_size):
        check()
        raw, distances = model.scored_logits(stack[start : start + batch_size], batch_size)
        for i, value in enumerate(raw, start):
            views[i].append(float(value))
            scores[i] = None if distances is None else float(distances[i - start])
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
