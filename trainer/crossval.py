"""k-fold and leave-one-source-out cross-validation over duplicate/patient groups, with out-of-fold predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .calibrate import calibrated, fit_calibration, youden_threshold
from .config import TrainConfig, validate
from .metrics import with_intervals
from .splits import group_kfold
from .train import fit, prepare, view_logits


def _folds(cfg: TrainConfig, prepared, folds: int, loso: bool) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, train, val, test) index arrays; validation is the next fold (k-fold) or a fold of the rest (LOSO)."""
    n = len(prepared.samples)
    out = []
    if loso:
        for source in sorted(set(prepared.sources)):
            test = np.nonzero(prepared.sources == source)[0]
            rest = np.nonzero(prepared.sources != source)[0]
            inner = group_kfold([prepared.samples[i] for i in rest], [prepared.grouping.groups[i] for i in rest],
                                k=6, seed=cfg.seed)
            val = rest[np.asarray(inner[0], dtype=int)]
            train = np.setdiff1d(rest, val)
            out.append((f"without-{source}", train, val, test))
        return out
    parts = group_kfold(prepared.samples, prepared.grouping.groups, k=folds, seed=cfg.seed)
    for k in range(folds):
        test, val = np.asarray(parts[k]), np.asarray(parts[(k + 1) % folds])
        train = np.setdiff1d(np.arange(n), np.concatenate([test, val]))
        out.append((f"fold{k}", train, val, test))
    return out


def cross_validate(cfg: TrainConfig, out: Path, folds: int = 5, leave_one_source_out: bool = False) -> dict:
    validate(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(cfg, Path(cfg.cache_dir) if cfg.cache_dir else out / "cache")
    norm = cfg.preprocess_spec().model_normalisation
    oof = np.full(len(prepared.samples), np.nan)
    per_fold = {}
    for name, train, val, test in _folds(cfg, prepared, folds, leave_one_source_out):
        model, _ = fit(cfg, prepared, out / name, train, val)
        lv = view_logits(model, prepared.images(val), norm, 1)[0]
        lt = view_logits(model, prepared.images(test), norm, 1)[0]
        calibration = fit_calibration(lv, prepared.labels[val])
        point = youden_threshold(calibrated(lv, calibration), prepared.labels[val])
        p = calibrated(lt, calibration)
        oof[test] = p
        per_fold[name] = with_intervals(p, prepared.labels[test], point.threshold, cfg.bootstrap)
        per_fold[name]["temperature"] = calibration.temperature
        per_fold[name]["logit_bias"] = calibration.bias
    summary = {}
    for metric in ("auc", "sensitivity", "specificity", "accuracy", "f1"):
        values = [f[metric]["value"] for f in per_fold.values() if f[metric]["value"] is not None]
        summary[metric] = {"mean": float(np.mean(values)) if values else None,
                           "std": float(np.std(values)) if values else None}
    result = {"folds": per_fold, "summary": summary, "leave_one_source_out": leave_one_source_out,
              "duplicate_groups": {"links": prepared.grouping.linked_pairs,
                                   "images_merged": prepared.grouping.merged_images}}
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    np.savez(out / "oof_predictions.npz", probability=oof, label=prepared.labels, source=prepared.sources,
             path=np.array([str(s.path) for s in prepared.samples]))
    return result
