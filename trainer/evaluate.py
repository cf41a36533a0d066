"""Scoring a model package on labelled data, with Grad-CAM measured where tumour masks or outlines exist.

The pointing game asks whether the map's peak lies inside the tumour; the energy share is the part of the map's sum
inside it. Both are computed on the slice's own grid, after the core puts the map back through the crop geometry.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.atomic import atomic_write_text
from brainmri_desktop.core.flag_rule import at_or_over
from brainmri_desktop.core.gradcam import GradCAM
from brainmri_desktop.core.inference import LoadedModel, TTAConfig
from brainmri_desktop.core.packages import ModelEntry, read_package
from brainmri_desktop.core.session import triage_chunks

from .calibrate import expected_calibration_error
from .config import TrainConfig
from .data import Sample, tumour_mask
from .dataset import preprocess_sample
from .metrics import with_intervals
from .plots import confusion, image_grid, reliability, roc
from .train import load_samples


def explanation_scores(cams: list[np.ndarray], masks: list[np.ndarray]) -> dict:
    hits, energy = [], []
    for cam, mask in zip(cams, masks):
        if mask is None or not mask.any() or cam.max() <= 0:
            continue
        y, x = np.unravel_index(np.argmax(cam), cam.shape)
        hits.append(bool(mask[y, x]))
        energy.append(float(cam[mask].sum() / cam.sum()))
    return {"n": len(hits), "pointing_game": float(np.mean(hits)) if hits else None,
            "energy_inside": float(np.mean(energy)) if energy else None}


def evaluate_samples(model: LoadedModel, samples: list[Sample], tta: int = 1, gradcam: bool = True,
                     batch: int = 64) -> dict:
    """Predictions for every readable sample; Grad-CAM scores for tumour samples with a mask or an outline. Through
    the application's own triage path, with every view of the TTA on every sample (no adaptive saving here)."""
    probs, labels, sources, kept, errors, heads = [], [], [], [], [], []
    cams_by_source: dict[str, tuple[list, list]] = {}
    spec = model.manifest.preprocessing
    outlined = (lambda i, s: s.label == 1 and (s.mask is not None or s.outline is not None)) if gradcam else None
    for chunk in triage_chunks(model, samples, TTAConfig(count=tta, adaptive=False), chunk=batch,
                               prepare=lambda s: preprocess_sample(s, spec), explain=outlined):
        errors += [[str(samples[i].path), reason] for i, reason in chunk.errors.items()]
        for i, r in chunk.results.items():
            s = samples[i]
            probs.append(r.probability)
            labels.append(s.label)
            sources.append(s.source)
            kept.append(s)
            heads.append(r.head_fraction)
        for i, m in chunk.cams.items():
            cams, masks = cams_by_source.setdefault(samples[i].source, ([], []))
            cams.append(m)
            masks.append(tumour_mask(samples[i], m.shape))
    return {"probs": np.array(probs), "labels": np.array(labels), "sources": np.array(sources), "samples": kept,
            "head_fraction": np.array(heads), "errors": errors,
            "explanations": {src: explanation_scores(*v) for src, v in cams_by_source.items()}}


def mid_brain(samples: list[Sample], head_fraction: np.ndarray, share: float = 0.6) -> np.ndarray:
    """Slices of patients whose head area is at least `share` of that patient's largest: the middle of the brain.
    LGG's no-tumour slices are mostly the top and the base of the head, so the whole set rewards telling slice levels
    apart; here tumour and no-tumour slices come from similar levels. False for slices without a patient."""
    largest: dict[str, float] = {}
    for s, h in zip(samples, head_fraction):
        if s.patient is not None:
            largest[s.patient] = max(largest.get(s.patient, 0.0), float(h))
    return np.array([s.patient is not None and h >= share * largest[s.patient] for s, h in zip(samples, head_fraction)],
                    dtype=bool)


def evaluate_package(package: Path, cfg: TrainConfig, out: Path, tta: int | None = None) -> dict:
    manifest = read_package(package)
    model = LoadedModel.load(ModelEntry(Path(package), "dir", manifest=manifest))
    samples = load_samples(cfg)
    ev = evaluate_samples(model, samples, tta or manifest.default_tta)
    t = manifest.threshold.threshold
    p, y, src = ev["probs"], ev["labels"], ev["sources"]
    res = {"model": manifest.id, "threshold": t, "overall": with_intervals(p, y, t),
           "ece": expected_calibration_error(p, y), "by_source": {}, "explanations": ev["explanations"],
           "unreadable": ev["errors"]}
    for s in sorted(set(src)):
        res["by_source"][s] = with_intervals(p[src == s], y[src == s], t)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "evaluation.json", json.dumps(res, indent=2))
    roc(p, y, out / "roc.png")
    reliability(p, y, out / "reliability.png")
    confusion(p, y, t, out / "confusion.png")
    flagged = at_or_over(p, t)
    wrong = [i for i in range(len(p)) if flagged[i] != bool(y[i])][:24]
    image_grid([preprocess_sample(ev["samples"][i], manifest.preprocessing).image for i in wrong],
               [f"{ev['sources'][i]} y={y[i]} p={p[i]:.2f}" for i in wrong], out / "misclassified.png")
    gradcam_review_grid(model, ev["samples"], p, y, t, out / "gradcam_tp_fp_fn.png")
    return res


def gradcam_review_grid(model: LoadedModel, samples: list[Sample], p, y, t: float, path: Path, per_kind: int = 6):
    """Grad-CAM over the model input for the most confident true positives, false positives and false negatives."""
    flagged = at_or_over(p, t)
    kinds = {"TP": flagged & (y == 1), "FP": flagged & (y == 0), "FN": ~flagged & (y == 1)}
    picked = []
    for kind, sel in kinds.items():
        idx = np.nonzero(sel)[0]
        order = idx[np.argsort(-np.abs(p[idx] - t))][:per_kind]
        picked += [(kind, int(i)) for i in order]
    if not picked:
        return
    images = np.stack([preprocess_sample(samples[i], model.manifest.preprocessing).image for _, i in picked])
    maps = GradCAM(model).input_maps(images)
    image_grid(list(images), [f"{k} p={p[i]:.2f}" for k, i in picked], path, overlays=list(maps))
