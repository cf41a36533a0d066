"""Fitting the scope guard of a model: what it was trained on, and its out-of-distribution detector (core/ood.py).

The detector is fitted on the pooled features of the model's training images and its threshold set on validation so
that at most 2 % of each development source's validation slices fall out of scope (the blank-image rule included).
`brainmri-train export` fits it from the run's own split; `brainmri-train fit-scope PACKAGE` fits it for a package
whose run is gone, reproducing the split from the manifest's configuration and checking its sizes against the
manifest. Images go through the application's own reader and preprocessing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from brainmri_desktop.core.atomic import atomic_write_folder
from brainmri_desktop.core.errors import BrainMRIError, ModelPackageError
from brainmri_desktop.core.manifest import MANIFEST_NAME, Manifest
from brainmri_desktop.core.ood import OOD_FILE, OODDetector, detector_from_bytes, run_scoring, scoring_model
from brainmri_desktop.core.packages import load_keras_model, read_package
from brainmri_desktop.core.preprocess import Preprocessed
from brainmri_desktop.core.scope import content_fraction, is_blank

from .card import HIDDEN_TITLE, hidden_findings, hidden_lines, with_card_section
from .config import TrainConfig
from .data import Sample
from .dataset import preprocess_sample

MAX_OUT = 0.02  # share of each development source's validation slices allowed out of scope
# Room above the last score kept in, relative, for the float round-off between the fit's batches and the session's
# (float32 storage alone moved a bundled CNN score by 1.5e-7 of itself); never past the next score, so that the validation shares stay as recorded, and no wider,
# since every step up lets more out-of-scope material in (the midpoint cost the bundled CNN 13 points on other
# modalities).
ROUND_OFF = 1e-4
N_COMPONENTS = 256  # eigen-directions kept exactly; the rest share their mean variance
# A feature's spread counts as at least this share of the median feature's: a channel silent on every training image
# (spread 0) otherwise divides a faint response elsewhere by almost nothing. The 128 px ResNet50's fit had six such
# channels, which put a few ordinary validation slices at distances of 10^4 and so set the threshold there (2026-12-04).
MIN_SCALE_SHARE = 0.1
# The features: cell means of these layers (the Grad-CAM layer and the earlier stages, which see texture and contrast)
# over a grid x grid of cells. Chosen on the bundled CNN's validation slices and test material (see card): 2x2 cells
# of all three blocks detected other modalities on 59 % where one global mean of the last block did on 8 %, patterns
# 66 % against 58 %, with the same 2 % allowance per source.
LAYERS = {"cnn": (("block1_relu", "block2_relu", "block3_relu"), 2),
          "resnet50": (("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"), 1)}
# What each development source holds, as far as its publishers say (see ../shared/data/README.md).
SOURCE_CONTENTS = {
    "kaggle-4class": "T1 post-contrast (figshare: axial, coronal and sagittal slices) and slices of mixed, unlabelled "
                     "contrast (SARTAJ, Br35H)",
    "kaggle-navoneel": "slices of mixed, unlabelled contrast, some photographed film",
    "br35h": "slices of mixed, unlabelled contrast (T1, T2, FLAIR)",
    "lgg-flair": "FLAIR (TCGA-LGG)",
}


def trained_on(cfg: TrainConfig) -> dict:
    sources = [root.name for root in cfg.data if root.name not in cfg.exclude_sources]
    figshare = "kaggle-4class" in sources  # its only sagittal and coronal slices, every one a tumour
    planes = {"orientations": ["axial"]}
    if figshare:
        planes["orientations_note"] = ("kaggle-4class's figshare part adds sagittal and coronal slices, every one a "
                                       "tumour: with no tumour-free slice in those planes a score there may read "
                                       "the plane, so they stay out of scope (the plane is read from the pixels)")
    return {
        **planes,
        "sequences": {s: SOURCE_CONTENTS.get(s, "not recorded") for s in sorted(sources)},
        "input_kinds": ["2-D greyscale slices as 8-bit PNG or JPEG (exported from DICOM by their publishers)"],
        "not_seen": [("tumour-free sagittal or coronal slices, steeply oblique slices" if figshare
                      else "sagittal, coronal or steeply oblique slices"), "diffusion (DWI, ADC, trace), EPI, fMRI, "
                     "perfusion", "localisers, reformats, projections (MIP)", "other modalities (CT, ultrasound, ...)"],
    }


def fit_detector(features: np.ndarray, layers: tuple[str, ...], grid: int = 1,
                 n_components: int = N_COMPONENTS) -> OODDetector:
    """Ledoit-Wolf covariance of the standardised features, kept as its top eigen-directions plus the mean variance
    of the others."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, np.float64)
    mean, spread = x.mean(axis=0), x.std(axis=0)
    scale = np.maximum(spread, MIN_SCALE_SHARE * np.median(spread) + 1e-6)
    cov = LedoitWolf().fit((x - mean) / scale).covariance_
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    k = min(n_components, len(values))
    residual = float(values[k:].mean()) if k < len(values) else 0.0
    return OODDetector(layers=tuple(layers), mean=mean, scale=scale, components=vectors[:, :k],
                       variances=np.maximum(values[:k], 1e-9), residual_variance=residual, threshold=1.0,
                       train_images=len(x), grid=grid)


def choose_threshold(scores: np.ndarray, sources: np.ndarray, blank: np.ndarray, max_out: float = MAX_OUT) -> float:
    """A threshold that leaves at most `max_out` of every source's slices out of scope, counting the blank ones (out
    whatever their score) against that share. A source whose blank slices alone exceed it (the degraded
    kaggle-navoneel snapshot, 0-2 grey levels) gets the share on its other slices instead: zero would let its
    strangest readable image set the threshold for every source. Each source's bound lies a little above its last
    score kept in (ROUND_OFF), below the next one, so that a slice at the bound does not flip on round-off."""
    threshold = 0.0
    for source in np.unique(sources):
        sel = sources == source
        kept = np.sort(scores[sel & ~blank])
        if len(kept) == 0:
            continue
        allowed = int(np.floor(max_out * sel.sum())) - int(blank[sel].sum())
        if allowed < 0:
            allowed = int(np.floor(max_out * len(kept)))
        last_in = float(kept[len(kept) - 1 - allowed])
        bound = last_in * (1 + ROUND_OFF)
        if allowed:
            bound = min(bound, (last_in + float(kept[len(kept) - allowed])) / 2)
        threshold = max(threshold, bound)
    return threshold


def _preprocessed(samples: list[Sample], manifest: Manifest) -> tuple[list[int], list[Preprocessed]]:
    kept, out = [], []
    for i, sample in enumerate(samples):
        try:
            out.append(preprocess_sample(sample, manifest.preprocessing))
            kept.append(i)
        except (BrainMRIError, ValueError, OSError):
            continue
    return kept, out


def features(net, samples: list[Sample], manifest: Manifest, grid: int, batch_size: int = 8):
    """(features, whether each is blank, sources) of the readable samples."""
    kept, pre = _preprocessed(samples, manifest)
    images = np.stack([p.image for p in pre]) if pre else np.zeros((0, 1, 1), np.float32)
    _logits, feats = run_scoring(net, images, manifest.preprocessing.model_normalisation, grid, batch_size)
    blank = np.array([is_blank(p.head_fraction, content_fraction(p)) for p in pre], dtype=bool)
    return feats, blank, np.array([samples[i].source for i in kept])


def fixed_subset(samples: list[Sample], per_source: int | None, seed: int) -> list[Sample]:
    """At most `per_source` samples of each source, drawn once with the run's seed (all of them when None)."""
    if per_source is None:
        return list(samples)
    rng = np.random.default_rng(seed)
    chosen = []
    for source in sorted({s.source for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.source == source]
        chosen += sorted(rng.choice(idx, size=min(per_source, len(idx)), replace=False).tolist())
    return [samples[i] for i in sorted(chosen)]


def _rates(scores, sources, blank, threshold) -> dict[str, dict]:
    out = (scores > threshold) | blank
    return {s: {"n": int((sources == s).sum()), "in_scope": round(float(1 - out[sources == s].mean()), 4)}
            for s in sorted(set(sources))}


def stored_fit(x_train: np.ndarray, layers: tuple[str, ...], grid: int = 1) -> OODDetector:
    """`fit_detector` as ood.npz holds it (float32 arrays), so that the threshold is set on the scores the session
    will compute: one set on the unrounded fit put a bundled CNN's LGG validation slice out after the reload."""
    return detector_from_bytes(fit_detector(x_train, layers, grid).to_bytes(), Path(OOD_FILE))


def with_threshold(detector: OODDetector, scores: np.ndarray, sources: np.ndarray,
                   blank: np.ndarray) -> tuple[OODDetector, dict[str, dict]]:
    """The detector with its threshold chosen on validation scores, and each source's validation share in scope."""
    threshold = choose_threshold(scores, sources, blank)
    val = _rates(scores, sources, blank, threshold)
    return replace(detector, threshold=threshold,
                   source_out_rate={s: round(1 - v["in_scope"], 4) for s, v in val.items()}), val


def fit(keras_model, manifest: Manifest, parts: dict[str, list[Sample]], per_source: int | None,
        seed: int = 0, batch_size: int = 8, log=print) -> tuple[OODDetector, dict]:
    """Fit on the training part (a fixed subset of `per_source` per source), threshold on validation, and the in-scope
    share on validation and on the held-out test part (never used for the fit)."""
    layers, grid = LAYERS[manifest.architecture]
    # a cell-scored ResNet50 ends at conv4: the guard reads the stages it has
    present = {layer.name for layer in keras_model.layers}
    layers = tuple(name for name in layers if name in present)
    net = scoring_model(keras_model, layers)
    train = fixed_subset(parts["train"], per_source, seed)
    log(f"scope: features of {len(train)} training images")
    x_train, blank, _s = features(net, train, manifest, grid, batch_size)
    x_train = x_train[~blank]  # an empty input is out by the image rule; its features would only widen the fit
    detector = stored_fit(x_train, layers, grid)
    measured = {}
    for part in ("val", "test"):
        if not parts.get(part):
            continue
        log(f"scope: features of {len(parts[part])} {part} images")
        x, blank, sources = features(net, parts[part], manifest, grid, batch_size)
        measured[part] = (detector.score(x), sources, blank)
    detector, val = with_threshold(detector, *measured["val"])
    threshold = detector.threshold
    metrics = {"layers": list(layers), "grid": grid, "train_images": len(x_train), "components": int(detector.components.shape[1]),
               "threshold": round(threshold, 4), "max_out": MAX_OUT, "validation": val}
    if "test" in measured:
        metrics["test"] = _rates(*measured["test"], threshold)
    return detector, metrics


def package_parts(package: Path, manifest: Manifest, data_dir: Path | None = None) -> dict[str, list[Sample]]:
    """The package's train/validation/test samples, the split reproduced from its configuration (seed, fractions,
    duplicate grouping); refused when the sizes differ from those the manifest recorded (the data changed)."""
    from .train import prepare

    cfg = TrainConfig.from_dict(manifest.config)
    if data_dir is not None:
        cfg = cfg.override(data=[{**root.__dict__, "path": str(Path(data_dir) / Path(root.path).name)}
                                 for root in cfg.data])
    prepared = prepare(cfg, Path(cfg.cache_dir) if cfg.cache_dir else None)
    split = prepared.split
    sizes = {"train": len(split.train), "val": len(split.val), "test": len(split.test)}
    expected = (manifest.training_data or {}).get("split_sizes")
    if expected and {k: int(v) for k, v in expected.items()} != sizes:
        raise ModelPackageError(package, f"the data give a split of {sizes}, the package was trained on {expected}: "
                                         "not the same data, so the detector cannot be fitted on its training images")
    excluded = set(cfg.exclude_sources)
    pick = lambda idx: [prepared.samples[i] for i in idx]  # noqa: E731
    return {"train": [s for s in pick(split.train) if s.source not in excluded], "val": pick(split.val),
            "test": pick(split.test)}


def write_scope(package: Path, detector: OODDetector, metrics: dict, trained: dict, card_section: str,
                hidden: dict | None = None) -> Manifest:
    """Add the detector, the trained-on fields, the scope metrics and the card section to a package
    (`rewrite_package`), with the hidden findings (`card.hidden_findings`) when measured."""
    sections, measured = {SECTION_TITLE: card_section}, {"scope": metrics}
    if hidden is not None:
        sections[HIDDEN_TITLE], measured["hidden_findings"] = hidden_lines(hidden), hidden
    return rewrite_package(package, {OOD_FILE: detector.to_bytes()}, sections, measured, ood_file=OOD_FILE,
                           trained_on=trained)


def rewrite_package(package: Path, files: dict[str, bytes], sections: dict[str, str], metrics: dict,
                    **fields) -> Manifest:
    """Replace or add `files`, the card's `sections` (by title), `metrics` and manifest `fields` of a package; every
    other file stays as it is, and the manifest's sha256 list is written again. The package is replaced whole: the
    window may be reading it, and must see the old package or the new one, never a new file beside the old manifest."""
    package = Path(package)
    manifest = read_package(package)
    contents = {p.name: p.read_bytes() for p in sorted(package.iterdir())
                if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")}
    contents.update(files)
    if "MODEL_CARD.md" in contents:
        card = contents["MODEL_CARD.md"].decode("utf-8")
        for title, section in sections.items():
            card = with_card_section(card, title, section)
        contents["MODEL_CARD.md"] = card.encode("utf-8")
    manifest = replace(manifest, files={name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
                       metrics={**manifest.metrics, **metrics}, **fields)
    atomic_write_folder(package, {**contents, MANIFEST_NAME: manifest.to_json().encode("utf-8")})
    read_package(package)  # refuse to leave a package that does not verify
    return manifest


SECTION_TITLE = "## Scope: what this model was trained on, and what it says out of scope"


def run_parts(run_dir: Path) -> dict[str, list[Sample]]:
    """A run's train/validation/test samples, from the split it wrote."""
    from .train import load_samples

    cfg = TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    split = json.loads((Path(run_dir) / "split.json").read_text())
    by_path = {str(s.path): s for s in load_samples(cfg)}
    return {part: [by_path[p] for p in paths if p in by_path] for part, paths in split.items()}


def add_scope(run_dir: Path, keras_model, manifest: Manifest, card: str,
              per_source: int | None = 500) -> tuple[Manifest, dict[str, bytes], str]:
    """For `export`: the manifest with the scope fields, the files to add to the package, and the card with its
    scope section."""
    cfg = TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))
    parts = run_parts(run_dir)
    detector, metrics = fit(keras_model, manifest, parts, per_source, cfg.seed)
    trained = trained_on(cfg)
    command = f"brainmri-train export {Path(run_dir).name} (detector fitted on at most {per_source} training " \
              "images per source)"
    hidden = hidden_findings(with_detector(keras_model, manifest, detector), parts["val"])
    manifest = replace(manifest, ood_file=OOD_FILE, trained_on=trained,
                       metrics={**manifest.metrics, "scope": metrics, "hidden_findings": hidden})
    card = with_card_section(card, SECTION_TITLE, card_section(trained, metrics, command))
    return manifest, {OOD_FILE: detector.to_bytes()}, with_card_section(card, HIDDEN_TITLE, hidden_lines(hidden))


def with_detector(keras_model, manifest: Manifest, detector: OODDetector):
    """The model as the session runs it, with this scope fit."""
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.packages import ModelEntry

    return LoadedModel(ModelEntry(Path(manifest.id), "dir", manifest=manifest), manifest, keras_model, detector)


def card_section(trained: dict, metrics: dict, command: str) -> str:
    """The model card's scope section, from the fitted figures."""
    def rates(part: str) -> str:
        return ", ".join(f"{s} {v['in_scope']:.1%} of {v['n']}" for s, v in metrics.get(part, {}).items())

    lines = [
        SECTION_TITLE,
        f"- Trained on: {', '.join(trained['orientations'])} slices; "
        + "; ".join(f"{s}: {c}" for s, c in trained["sequences"].items()) + f". Input: {trained['input_kinds'][0]}.",
        f"- Never seen: {'; '.join(trained['not_seen'])}. Such slices keep their probability but are not flagged.",
        "- Every slice gets a scope verdict: from its DICOM headers where present (orientation within "
        "30 degrees of axial; diffusion, EPI, perfusion, localiser, derived, secondary and reformatted images are out), "
        "a blank or near-empty image is out, and for every input (PNG and JPEG too) an out-of-distribution score on "
        f"the model's own features: a Mahalanobis distance on the means of {', '.join(metrics['layers'])} over "
        f"{metrics['grid']}x{metrics['grid']} cells "
        f"(Ledoit-Wolf covariance, {metrics['components']} leading directions kept exactly), fitted on "
        f"{metrics['train_images']} training images. Threshold {metrics['threshold']:.2f}, set so that at most "
        f"{metrics['max_out']:.0%} of each development source's validation slices fall out of scope, blank ones "
        "included, where the blank ones leave room (else the score puts out at most that share of the others).",
        f"- In scope, validation (threshold set here): {rates('validation')}.",
    ]
    if metrics.get("test"):
        lines.append(f"- In scope, held-out test split (never used for the fit): {rates('test')}.")
    lines.append("- Slices whose model input is empty count as out of scope in these shares (the blank rule): LGG's "
                 "slices above the head and most of kaggle-navoneel's out-of-scope share (a snapshot whose images "
                 "hold 0-2 grey levels). The LGG reslices below are PNG files without headers, so only the model's "
                 "score can judge them; a DICOM sagittal or coronal series is put out by its orientation header.")
    material = metrics.get("material")
    if material:
        lines += ["- Detection on out-of-scope material built on the development machine "
                  "(`python -m trainer.scope_material`; never committed):", "",
                  "| kind | images | out of scope (all rules) | out by the model's score alone |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {v['out']:.1%} | {v['out_by_model']:.1%} |" for k, v in material.items()]
        lines.append("")
    lines += [f"- Fitted with: `{command}`", ""]
    return "\n".join(lines) + "\n"


def measure_material(keras_model, manifest: Manifest, detector: OODDetector, folder: Path,
                     skip_patients: set[str] = frozenset(), batch_size: int = 8) -> dict:
    """Share of each kind's slices out of scope (all rules, and the model's score alone). Reslices of patients the
    model trained on are skipped: their axial slices taught the model that anatomy."""
    from brainmri_desktop.core.io.study import read_file
    from brainmri_desktop.core.preprocess import preprocess_slice
    from brainmri_desktop.core.scope import assess

    net = scoring_model(keras_model, detector)
    out = {}
    for kind_dir in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        slices, pre = [], []
        for path in sorted(kind_dir.iterdir()):
            if path.name.split("__")[0] in skip_patients:
                continue
            try:
                first = read_file(path)[0]
                pre.append(preprocess_slice(first, manifest.preprocessing))
                slices.append(first)
            except (BrainMRIError, ValueError, OSError):
                continue
        if not pre:
            continue
        _l, feats = run_scoring(net, np.stack([p.image for p in pre]), manifest.preprocessing.model_normalisation,
                                detector.grid, batch_size)
        scores = detector.score(feats)
        verdicts = [assess(s, p, float(v), detector) for s, p, v in zip(slices, pre, scores)]
        out[kind_dir.name] = {"n": len(pre), "out": round(float(np.mean([v.out_of_scope for v in verdicts])), 4),
                              "out_by_model": round(float(np.mean(scores > detector.threshold)), 4)}
    return out


def fit_package(package: Path, data_dir: Path | None = None, per_source: int | None = 500,
                material: Path | None = None, log=print) -> Manifest:
    """`brainmri-train fit-scope`: fit, measure and write the scope of an existing package."""
    package = Path(package)
    manifest = read_package(package)
    model = load_keras_model(package, manifest)
    parts = package_parts(package, manifest, data_dir)
    cfg = TrainConfig.from_dict(manifest.config)
    detector, metrics = fit(model, manifest, parts, per_source, cfg.seed, log=log)
    if material is not None:
        train_patients = {s.patient for s in parts["train"] if s.patient}
        metrics["material"] = measure_material(model, manifest, detector, material, train_patients)
    command = f"brainmri-train fit-scope {package.name}" + (f" --train-per-source {per_source}" if per_source else "")
    command += " --material <folder>" if material is not None else ""
    trained = trained_on(cfg)
    log(json.dumps(metrics, indent=1))
    hidden = hidden_findings(with_detector(model, manifest, detector), parts["val"])
    return write_scope(package, detector, metrics, trained, card_section(trained, metrics, command), hidden)


def write_hidden_findings(package: Path, data_dir: Path | None = None, log=print) -> Manifest:
    """`brainmri-train hidden-findings`: measure and write a package's hidden findings (its card section and
    metrics.hidden_findings) with its own scope fit; its weights and scope fit stay as they are."""
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.packages import ModelEntry

    package = Path(package)
    manifest = read_package(package)
    model = LoadedModel.load(ModelEntry(package, "dir", manifest=manifest))
    hidden = hidden_findings(model, package_parts(package, manifest, data_dir)["val"])
    log(json.dumps(hidden, indent=1))
    return rewrite_package(package, {}, {HIDDEN_TITLE: hidden_lines(hidden)}, {"hidden_findings": hidden})


def add_fit_scope_parser(sub) -> None:
    """`brainmri-train fit-scope`, registered by trainer/cli.py."""
    p = sub.add_parser("fit-scope", help="fit the scope guard of an existing package without retraining")
    p.add_argument("package", type=Path)
    p.add_argument("--data", type=Path, help="folder holding the package's data roots by their folder names "
                                             "(default: the paths in its configuration)")
    p.add_argument("--train-per-source", type=int, default=500, dest="per_source",
                   help="training images per source the detector is fitted on, drawn once with the run's seed "
                        "(0: all)")
    p.add_argument("--material", type=Path, help="out-of-scope material (python -m trainer.scope_material) to "
                                                  "measure the detection rate on, for the card")
    p.set_defaults(func=lambda args: _cmd(args))
    p = sub.add_parser("hidden-findings", help="measure how many confident validation tumour slices each scope check "
                                               "hides, into a package's card, without changing its weights or fit")
    p.add_argument("package", type=Path)
    p.add_argument("--data", type=Path, help="folder holding the package's data roots by their folder names")
    p.set_defaults(func=lambda args: 0 if write_hidden_findings(args.package, args.data) else 1)


def _cmd(args) -> int:
    manifest = fit_package(args.package, args.data, args.per_source or None, args.material)
    print(f"fitted the scope of {manifest.id}: threshold {manifest.metrics['scope']['threshold']}")
    return 0
