"""One training run: data, split, staged training with checkpoints and resume, then calibration and metrics.

Stages: a ResNet50 from pretrained weights trains its head first, then its top layers (two-phase fine-tuning); a model
from a random initialisation trains whole, optionally at low resolutions first (progressive resizing). Every epoch
writes the last weights, the optimizer state and the run state, so `--resume` continues where a run stopped.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from brainmri_desktop.core.augment import TTA_ORDER, apply_tta
from brainmri_desktop.core.atomic import atomic_write_bytes, atomic_write_text
from brainmri_desktop.core.inference import logit_function, run_logits

from . import __version__
from .architectures import (ArchConfig, backbone_layer_names, build, gradcam_layer, lesion_loss, load_weights_by_name,
                            with_lesion_head)
from .augment import build_augmenter
from .calibrate import (Calibration, calibrated, expected_calibration_error, fit_calibration, fit_temperature,
                        sensitivity_threshold, youden_threshold)
from .config import TrainConfig, validate
from .data import DataError, Sample, load_source, summary
from .dataset import Cache, LesionTargets, build_cache, make_sequence
from .dedup import Grouping, group_samples
from .distribute import distribution, divisible_batches
from .metrics import with_intervals
from .pack import load_packed
from .splits import Split, split_groups
from .train_graph import float32_copy, hardware, keep_outputs_float32, precision, uint8_trainee


@dataclass
class Prepared:
    samples: list[Sample]
    cache: Cache
    labels: np.ndarray
    sources: np.ndarray
    grouping: Grouping
    split: Split
    unreadable: list[tuple[str, str]]

    def images(self, idx) -> np.ndarray:
        return self.cache.images[np.asarray(idx, dtype=int)]


def load_samples(cfg: TrainConfig) -> list[Sample]:
    samples: list[Sample] = []
    for root in cfg.data:
        samples += load_source(Path(root.path), root.name, root.label, root.class_map)
    return samples


def prepare(cfg: TrainConfig, cache_dir: Path | None, packed: Path | None = None) -> Prepared:
    """Read and preprocess every image once, drop the unreadable, group duplicates and split. `packed`: a folder of
    data preprocessed elsewhere (trainer/pack.py) instead of the config's data folders."""
    if packed:
        samples, cache = load_packed(packed, cfg)
    else:
        samples = load_samples(cfg)
        cache = build_cache(samples, cfg.preprocess_spec(), cache_dir, workers=cfg.workers)
    unreadable = [(str(samples[i].path), r) for i, r in sorted(cache.errors.items())]
    keep = np.nonzero(cache.ok)[0]
    samples = [samples[i] for i in keep]
    cache = cache.subset(keep)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    for lab, name in ((0, "no tumour"), (1, "tumour")):
        if not (labels == lab).any():
            raise DataError(f"the class '{name}' has no readable images: training needs both classes")
    grouping = group_samples(samples, cache.hash_list(), cfg.dedup_distance)
    split = split_groups(samples, grouping.groups, cfg.fractions, cfg.seed)
    sources = np.array([s.source for s in samples])
    return Prepared(samples, cache, labels, sources, grouping, split, unreadable)


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    size: int
    lr: float
    optimizer: str
    trainable: str  # all | head | top


def plan_stages(cfg: TrainConfig) -> list[Stage]:
    if cfg.arch == "resnet50" and (cfg.backbone_weights != "random" or cfg.init_from):
        return [Stage("head", cfg.head_epochs, cfg.img_size, cfg.head_lr, "adam", "head"),
                Stage("finetune", max(0, cfg.epochs - cfg.head_epochs), cfg.img_size, cfg.finetune_lr, "adamw", "top")]
    stages = [Stage(f"size{s}", e, s, cfg.lr, cfg.optimizer, "all") for s, e in cfg.progressive]
    rest = cfg.epochs - sum(s.epochs for s in stages)
    return stages + [Stage("final", max(1, rest), cfg.img_size, cfg.lr, cfg.optimizer, "all")]


def set_trainable(model, mode: str, unfreeze: int, freeze_through: str | None = None) -> None:
    """`mode` all, head (the backbone frozen) or top (the last `unfreeze` backbone layers train); the backbone up to
    and including `freeze_through` stays frozen whatever the mode."""
    import keras

    order = backbone_layer_names(model) if model.name == "brainmri_resnet50" else []
    backbone = set(order)
    top = set(order[-unfreeze:]) if unfreeze and backbone else set()
    if freeze_through is not None and freeze_through not in backbone:
        raise ValueError(f"freeze_through: the model has no backbone layer {freeze_through!r}")
    frozen = set(order[:order.index(freeze_through) + 1]) if freeze_through else set()
    for layer in model.layers:
        if layer.name in frozen:
            layer.trainable = False
        elif mode == "all" or layer.name not in backbone:
            layer.trainable = True
        elif mode == "top":
            # BatchNorm statistics stay frozen while fine-tuning: small batches would wreck them.
            layer.trainable = layer.name in top and not isinstance(layer, keras.layers.BatchNormalization)
        else:
            layer.trainable = False


def compile_model(model, stage: Stage, cfg: TrainConfig, lesion_head: bool = False) -> None:
    import keras

    if stage.optimizer == "adamw":
        opt = keras.optimizers.AdamW(learning_rate=stage.lr, weight_decay=cfg.weight_decay)
    else:
        opt = keras.optimizers.Adam(learning_rate=stage.lr)
    if cfg.loss == "focal":
        loss = keras.losses.BinaryFocalCrossentropy(alpha=cfg.focal_alpha, gamma=cfg.focal_gamma,
                                                    apply_class_balancing=True)
    else:
        loss = keras.losses.BinaryCrossentropy()
    auc = keras.metrics.AUC(name="auc")
    # Distributed, validation batches are padded with examples of weight 0 (distribute.divisible_batches), which only
    # a weighted metric leaves out; the training AUC then weighs classes and sources as the loss does.
    metrics = "weighted_metrics" if cfg.distribute != "none" else "metrics"
    if lesion_head:
        model.compile(optimizer=opt, loss={"prob": loss, "lesion": lesion_loss},
                      loss_weights={"prob": 1.0, "lesion": cfg.lesion_weight}, **{metrics: {"prob": [auc]}})
    else:
        model.compile(optimizer=opt, loss=loss, **{metrics: [auc]})


def cosine_lr(base: float, epoch_in_stage: int, warmup: int, period: int = 8) -> float:
    """Linear warm-up, then cosine annealing with warm restarts whose period doubles."""
    if epoch_in_stage < warmup:
        return base * (epoch_in_stage + 1) / (warmup + 1)
    e, p = epoch_in_stage - warmup, period
    while e >= p:
        e, p = e - p, p * 2
    return 1e-2 * base + 0.5 * (base - 1e-2 * base) * (1 + math.cos(math.pi * e / p))


def class_weights(labels: np.ndarray) -> dict[int, float]:
    n, pos = len(labels), int(labels.sum())
    return {0: n / (2 * max(1, n - pos)), 1: n / (2 * max(1, pos))}


def sample_weights(cfg: TrainConfig, prepared: Prepared, idx: np.ndarray) -> np.ndarray:
    labels = prepared.labels[idx]
    w = np.ones(len(idx), dtype=np.float32)
    if cfg.class_weights:
        cw = class_weights(labels)
        w *= np.where(labels == 1, cw[1], cw[0]).astype(np.float32)
    per_source = {r.name: r.weight for r in cfg.data}
    w *= np.array([per_source.get(s, 1.0) for s in prepared.sources[idx]], dtype=np.float32)
    return w


class _Checkpoints:
    """Files of a run that make it resumable."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "checkpoints"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.dir / "state.json"

    def load_state(self) -> dict | None:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else None

    def save_weights(self, model, name: str) -> None:
        # Keras writes the file itself; it goes into place whole, so a run killed mid-write still resumes.
        tmp = self.dir / f"partial.{name}"
        model.save_weights(tmp)
        atomic_write_bytes(self.dir / name, tmp.read_bytes())
        tmp.unlink()

    def save(self, model, state: dict, optimizer) -> None:
        self.save_weights(model, "last.weights.h5")
        buffer = io.BytesIO()
        np.savez(buffer, *[np.asarray(v) for v in optimizer.variables])
        atomic_write_bytes(self.dir / "optimizer.npz", buffer.getvalue())
        atomic_write_text(self.state_file, json.dumps(state, indent=1))

    def restore_optimizer(self, model) -> None:
        path = self.dir / "optimizer.npz"
        if not path.exists():
            return
        model.optimizer.build(model.trainable_variables)
        with np.load(path) as z:
            saved = [z[f"arr_{i}"] for i in range(len(z.files))]
        variables = model.optimizer.variables
        if [tuple(v.shape) for v in variables] == [s.shape for s in saved]:
            for v, s in zip(variables, saved):
                v.assign(s)


def _build_with_backbone(arch_cfg: ArchConfig):
    """The model, or a ValueError naming the backbone weights that could not be had (offline, a missing file)."""
    try:
        return build(arch_cfg)
    except Exception as exc:  # Keras raises a bare Exception when a download fails, ValueError on a bad file
        if arch_cfg.backbone_weights == "random":
            raise
        where = "downloaded (no network?)" if arch_cfg.backbone_weights == "imagenet" else "read"
        raise ValueError(f"backbone weights {arch_cfg.backbone_weights!r} could not be {where}: {exc}. "
                         "Give a local weights file with --backbone-weights PATH, or random.") from exc


def _open_session(ckpt: _Checkpoints, cfg: TrainConfig, resume: bool, command: str) -> tuple[dict, dict]:
    """The run's state (the checkpoint's when resuming) with this session added: each session (a first run, each
    --resume) says where it ran, for how long and how it was started."""
    state = ckpt.load_state() if resume else None
    state = state or {"epoch": 0, "best_auc": -1.0, "best_epoch": -1, "wait": 0, "history": [], "stopped": False}
    session = {"command": command, **hardware(), "precision": cfg.precision, "workers": cfg.workers,
               "epochs": [state["epoch"], state["epoch"]], "seconds": 0.0}
    state.setdefault("sessions", []).append(session)
    return state, session


def _arch_config(cfg: TrainConfig) -> ArchConfig:
    return ArchConfig(arch=cfg.arch, head_dropout=cfg.dropout, backbone_weights=cfg.backbone_weights,
                      lesion_evidence=cfg.lesion_evidence, cell_score=cfg.cell_score, fine_cells=cfg.fine_cells)


def _build_graphs(cfg: TrainConfig, log) -> tuple:
    """(model, trainee, graph): the classifier that is returned; what the checkpoints hold (the classifier, or with
    lesion guidance the same layers with a second output); and what trains, `trainee` behind the uint8 input."""
    with precision(cfg.precision):
        model = _build_with_backbone(_arch_config(cfg))
    if cfg.init_from:  # a resumed run then loads its own checkpoint over these
        log(f"{load_weights_by_name(model, cfg.init_from)} layers start from {cfg.init_from}")
    trainee = with_lesion_head(model, gradcam_layer(cfg.arch, cfg.gradcam_layer)) if cfg.lesion_weight > 0 else model
    keep_outputs_float32(trainee)
    return model, trainee, uint8_trainee(trainee, cfg.preprocess_spec().model_normalisation)


@dataclass
class _Fit:
    """What every stage of one fit works on."""

    cfg: TrainConfig
    prepared: Prepared
    ckpt: _Checkpoints
    state: dict
    session: dict
    model: object
    trainee: object
    graph: object
    train_idx: np.ndarray
    val_idx: np.ndarray
    weights: np.ndarray
    augmenter: object
    log: Callable
    deadline: float | None

    @property
    def guided(self) -> bool:
        return self.cfg.lesion_weight > 0

    @property
    def monitor(self) -> str:
        return "val_prob_auc" if self.guided else "val_auc"


def _sequences(f: _Fit, stage: Stage, initial: int):
    """The stage's training batches (in the order a run resumed at epoch `initial` would have) and validation
    batches, with the lesion targets at the Grad-CAM layer's grid when the run is guided."""
    targets = {}
    if f.guided:
        probe = np.zeros((1, stage.size, stage.size, 3), np.float32)
        grid = int(f.trainee(probe, training=False)["lesion"].shape[1])
        cache = f.prepared.cache
        targets = {part: LesionTargets(cache.masks[idx], cache.has_mask[idx], grid, f.cfg.lesion_target)
                   for part, idx in (("train", f.train_idx), ("val", f.val_idx))}
    cfg, prepared = f.cfg, f.prepared
    train_seq = make_sequence(prepared.images(f.train_idx), prepared.labels[f.train_idx], f.weights, cfg.batch_size,
                              stage.size, f.augmenter, shuffle=True, seed=cfg.seed,
                              max_batches=cfg.steps_per_epoch, lesion=targets.get("train"), workers=cfg.workers)
    train_seq.epoch = initial
    train_seq._order()
    val_seq = make_sequence(prepared.images(f.val_idx), prepared.labels[f.val_idx],
                            np.ones(len(f.val_idx), np.float32), 64, stage.size, shuffle=False,
                            lesion=targets.get("val"))
    return train_seq, val_seq


def _fit_stage(f: _Fit, stage: Stage, start: int, end: int, final_stage: bool) -> int | None:
    """Trains the stage's epochs from the run's current one to `end`; returns the epoch after which the time budget
    paused the run, else None."""
    import keras

    from .run_state import EpochRules, RunState

    cfg = f.cfg
    set_trainable(f.model, stage.trainable, cfg.unfreeze, cfg.freeze_through)
    compile_model(f.graph, stage, cfg, lesion_head=f.guided)
    initial = f.state["epoch"]
    if initial > 0 and (f.ckpt.dir / "last.weights.h5").exists():
        f.trainee.load_weights(f.ckpt.dir / "last.weights.h5")
        if initial > start:  # resuming inside this stage: its optimizer state continues too
            f.ckpt.restore_optimizer(f.graph)
    train_seq, val_seq = _sequences(f, stage, initial)
    if f.session.get("devices"):
        val_seq = divisible_batches(val_seq, len(f.session["devices"]))
    schedule = (lambda epoch: cosine_lr(stage.lr, epoch - start, cfg.warmup_epochs)) if cfg.schedule == "cosine" \
        else None
    rules = EpochRules(stage.name, stage.size, cfg.img_size, f.monitor, cfg.batch_size, cfg.patience,
                       early_stopping=final_stage, learning_rate=schedule, deadline=f.deadline)
    run_state = RunState(rules, f.state, f.session, f.ckpt, f.trainee, f.log)
    callbacks = [run_state]
    if cfg.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=f.monitor, mode="max", factor=0.5,
                                                           patience=2, min_lr=1e-6, verbose=1))
    f.log(f"stage {stage.name}: epochs {initial + 1}-{end} at {stage.size}px, lr {stage.lr:g}, "
          f"trains {stage.trainable}")
    try:
        f.graph.fit(train_seq, validation_data=val_seq, epochs=end, initial_epoch=initial, callbacks=callbacks,
                    verbose=2)
    finally:
        train_seq.close()  # its batch workers and their temporary files, also on an error or Ctrl-C
    return run_state.paused_after


def fit(cfg: TrainConfig, prepared: Prepared, run_dir: Path, train_idx, val_idx, resume: bool = False, log=print,
        command: str = "", deadline: float | None = None):
    """Train through every stage; returns the model with its best weights (by validation AUC) and the history. With a
    `deadline` (time.time() value), training stops after the last epoch that is expected to end before it and the
    model returned is None: `--resume` continues from that epoch."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    ckpt = _Checkpoints(run_dir)
    state, session = _open_session(ckpt, cfg, resume, command)
    with distribution(cfg.distribute) as session["devices"]:
        if session["devices"]:
            log(f"data-parallel over {len(session['devices'])} devices: {', '.join(session['devices'])}")
        model, trainee, graph = _build_graphs(cfg, log)
        train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
        f = _Fit(cfg, prepared, ckpt, state, session, model, trainee, graph, train_idx, val_idx,
                 sample_weights(cfg, prepared, train_idx), build_augmenter(cfg.augment), log, deadline)
        stages, start = plan_stages(cfg), 0
        for s_index, stage in enumerate(stages):
            end = start + stage.epochs
            if not state["stopped"] and state["epoch"] < end:
                paused = _fit_stage(f, stage, start, end, final_stage=s_index == len(stages) - 1)
                if paused:
                    log(f"time budget reached after epoch {paused}: continue with --resume")
                    return None, state
            start = end
    # The best weights at the final size; a run stopped before it (or finished early with fewer epochs) keeps the last.
    for name in ("best.weights.h5", "last.weights.h5"):
        if (ckpt.dir / name).exists():
            trainee.load_weights(ckpt.dir / name)
            break
    # What is saved and exported computes in float32 whatever the training precision.
    if cfg.precision != "float32":
        model = float32_copy(model, lambda: build(replace(_arch_config(cfg), backbone_weights="random")))
    return model, state


def view_logits(model, images_u8: np.ndarray, normalisation: str, views: int) -> np.ndarray:
    """Logits (views, N) for the first `views` test-time augmentations."""
    fn = logit_function(model)
    unit = images_u8.astype(np.float32) / 255.0
    return np.stack([run_logits(fn, apply_tta(unit, name), normalisation, 64) for name in TTA_ORDER[:views]])


def evaluate_predictions(cfg, logits_val, y_val, src_val, logits_test, y_test, src_test, calib_mask) -> dict:
    """Calibration and thresholds on the calibration part of validation, then metrics everywhere."""
    lv, yv = logits_val[calib_mask], y_val[calib_mask]
    calibration = fit_calibration(lv, yv)
    p_val = calibrated(logits_val, calibration)
    youden = youden_threshold(p_val[calib_mask], yv)
    high = sensitivity_threshold(p_val[calib_mask], yv, cfg.sensitivity_target)
    ece_with = lambda c: expected_calibration_error(calibrated(lv, c), yv)  # noqa: E731
    out = {
        "temperature": calibration.temperature,
        "logit_bias": calibration.bias,
        "threshold": asdict(youden),
        "high_sensitivity": asdict(high),
        "ece_before": ece_with(Calibration(1.0)),
        "ece_temperature_only": ece_with(Calibration(fit_temperature(lv, yv))),
        "ece_after": ece_with(calibration),
        "ece_test": None,
        "validation": with_intervals(p_val[calib_mask], y_val[calib_mask], youden.threshold, cfg.bootstrap),
        "validation_by_source": {}, "test": None, "test_by_source": {},
    }
    for src in sorted(set(src_val)):
        sel = src_val == src
        out["validation_by_source"][src] = with_intervals(p_val[sel], y_val[sel], youden.threshold, cfg.bootstrap)
        out["validation_by_source"][src]["high_sensitivity_point"] = with_intervals(
            p_val[sel], y_val[sel], high.threshold, 0)
    if len(y_test):
        p_test = calibrated(logits_test, calibration)
        out["ece_test"] = expected_calibration_error(p_test, y_test)
        out["test"] = with_intervals(p_test, y_test, youden.threshold, cfg.bootstrap)
        for src in sorted(set(src_test)):
            sel = src_test == src
            out["test_by_source"][src] = with_intervals(p_test[sel], y_test[sel], youden.threshold, cfg.bootstrap)
            out["test_by_source"][src]["high_sensitivity_point"] = with_intervals(
                p_test[sel], y_test[sel], high.threshold, 0)
    return out


def tta_results(cfg: TrainConfig, views_val, y_val, src_val, views_test, y_test, src_test, calib_mask,
                views: int | None = None) -> dict:
    """Calibration, thresholds and metrics at one view and at `cfg.tta_eval` views, for the default number of views:
    `views` when given (a choice made for speed or robustness, `choose-tta`), else the most views only when they
    measurably help on validation (TTA must earn its place)."""
    by_tta = {}
    for k in sorted({1, cfg.tta_eval, views or 1}):
        lt = views_test[:k].mean(0) if views_test is not None and len(views_test) else np.zeros(0)
        by_tta[k] = evaluate_predictions(cfg, views_val[:k].mean(0), y_val, src_val, lt, y_test, src_test, calib_mask)
    summary = {str(k): {"auc": r["validation"]["auc"]["value"], "ece_after": r["ece_after"]} for k, r in by_tta.items()}
    auc = {k: r["validation"]["auc"]["value"] or 0.0 for k, r in by_tta.items()}
    k = cfg.tta_eval
    best_k = views or (k if auc[k] > auc[1] + 0.002 and by_tta[k]["ece_after"] <= by_tta[1]["ece_after"] + 0.01 else 1)
    return {**by_tta[best_k], "default_tta": best_k, "tta_comparison": summary,
            "tta_choice": "chosen" if views else "auc"}


def choose_tta(run_dir: Path, views: int) -> dict:
    """Make `views` the run's default TTA: calibration, thresholds and every metric refitted on the mean logit of that
    many views from the run's saved predictions, results.json rewritten. For a choice the AUC rule would not make
    (a flip pair as a second look at every slice, when it costs little time)."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    results = json.loads((run_dir / "results.json").read_text())
    with np.load(run_dir / "predictions.npz") as z:
        p = {k: z[k] for k in z.files}
    if not 1 <= views <= len(p["val_logits"]):
        raise ValueError(f"{run_dir}: the run saved predictions of {len(p['val_logits'])} views; {views} asked")
    calib_mask = ~np.isin(p["val_sources"], list(cfg.exclude_sources))
    results.update(tta_results(replace(cfg, tta_eval=len(p["val_logits"])), p["val_logits"], p["val_labels"],
                               p["val_sources"], p["test_logits"], p["test_labels"], p["test_sources"], calib_mask,
                               views))
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=_json_default))
    return results


def run(cfg: TrainConfig, run_dir: Path, resume: bool = False, log=print, command: str = "",
        packed: Path | None = None, time_budget: float | None = None) -> dict:
    """The whole `train` command: writes config, split, checkpoints, model, results and plots into run_dir."""
    from .plots import write_run_plots

    validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    t0 = time.time()
    prepared = prepare(cfg, Path(cfg.cache_dir) if cfg.cache_dir else run_dir / "cache", packed)
    split = prepared.split
    excluded = np.isin(prepared.sources, list(cfg.exclude_sources))
    train_idx = np.array([i for i in split.train if not excluded[i]])
    val_idx = np.array(split.val)
    calib_mask = ~excluded[val_idx]
    log(f"{len(prepared.samples)} images ({len(prepared.unreadable)} unreadable skipped); "
        f"{prepared.grouping.merged_images} images in near-duplicate groups ({prepared.grouping.linked_pairs} links); "
        f"train {len(train_idx)}, validation {len(val_idx)}, test {len(split.test)}")
    atomic_write_text(run_dir / "split.json", json.dumps({
        part: [str(prepared.samples[i].path) for i in idx]
        for part, idx in (("train", train_idx), ("val", val_idx), ("test", split.test))}, indent=0))
    # Early stopping and the best epoch look only at the sources that train: a left-out source must not pick the epoch.
    log(f"early stopping watches {int(calib_mask.sum())} validation images of the training sources")
    model, state = fit(cfg, prepared, run_dir, train_idx, val_idx[calib_mask], resume=resume, log=log,
                       command=command, deadline=t0 + time_budget if time_budget else None)
    if model is None:
        return {"paused_after_epoch": state["epoch"]}
    model.save(run_dir / "model.keras")
    norm = cfg.preprocess_spec().model_normalisation
    views_val = view_logits(model, prepared.images(val_idx), norm, cfg.tta_eval)
    test_idx = np.asarray(split.test, dtype=int)
    views_test = view_logits(model, prepared.images(test_idx), norm, cfg.tta_eval) if len(test_idx) else None
    y_val, src_val = prepared.labels[val_idx], prepared.sources[val_idx]
    y_test, src_test = prepared.labels[test_idx], prepared.sources[test_idx]
    results = tta_results(cfg, views_val, y_val, src_val, views_test, y_test, src_test, calib_mask)
    best_k = results["default_tta"]
    results.update({
        "epochs_trained": state["epoch"], "best_epoch": state["best_epoch"],
        "train_seconds": round(time.time() - t0, 1), "epoch_seconds": round(state.get("epoch_seconds", 0.0), 1),
        "sessions": state["sessions"],
        "devices": state["sessions"][-1]["devices"],  # those this session's training spanned (--distribute)
        "trainer_version": __version__,
        "data": summary(prepared.samples), "unreadable": prepared.unreadable,
        "duplicate_groups": {"max_distance": cfg.dedup_distance, "links": prepared.grouping.linked_pairs,
                             "images_merged": prepared.grouping.merged_images},
        "split_sizes": {"train": int(len(train_idx)), "val": int(len(val_idx)), "test": int(len(test_idx))},
        "excluded_sources": list(cfg.exclude_sources),
        "early_stopping_images": int(calib_mask.sum()),
        "preprocessing": cfg.preprocess_spec().to_dict(),
    })
    np.savez(run_dir / "predictions.npz", val_logits=views_val, val_labels=y_val, val_sources=src_val,
             test_logits=views_test if views_test is not None else np.zeros((0, 0)), test_labels=y_test,
             test_sources=src_test)
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=2, default=_json_default))
    calibration = Calibration(results["temperature"], results["logit_bias"])
    write_run_plots(run_dir, state["history"], calibrated(views_val[:best_k].mean(0), calibration), y_val,
                    results["threshold"]["threshold"])
    log(f"validation AUC {results['validation']['auc']['value']}, threshold {results['threshold']['threshold']:.3f}, "
        f"T {results['temperature']:.2f}, bias {results['logit_bias']:.2f}, ECE {results['ece_before']:.3f} -> {results['ece_after']:.3f}")
    return results


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(type(o))
