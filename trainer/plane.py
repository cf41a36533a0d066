"""`brainmri-train plane`: the classifier that reads a header-less slice's plane from its pixels (core/plane.py).

Material, split as the run given (its split.json, so the classifier's validation and test slices are the bundled
models' own and no LGG patient crosses parts):
- axial: the run's slices of the sources whose slices are all axial (at most `per_source` per source in training), in
  training also each one squashed along one axis and stretched back, so that the through-plane blur of the reslices
  below is no cue;
- sagittal and coronal: each LGG patient's axial FLAIR slices stacked into a volume and cut every 8 pixels from the
  head's centre (trainer/scope_material.reslice), mirrored left-right in training (a sagittal slice faces either way).
The small network of core/plane.py is trained in Keras on the 32 px inputs (a one-hidden-layer perceptron on the
same inputs caught 88-92 % of the validation reslices at the same axial share, the network 97-98 %); its axial
threshold is set on validation so that at most `MAX_AXIAL_OUT` of the axial sources' slices fall under it. The
weights go to resources/plane/plane.npz for the core's numpy forward pass; the report (shares per source and plane on
validation and test, including the three cuts per patient that `scope_material` writes) to OUT/report.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.errors import BrainMRIError
from brainmri_desktop.core.io.study import read_file
from brainmri_desktop.core.plane import INPUT_SPEC, PLANES, PlaneClassifier, plane_file
from brainmri_desktop.core.preprocess import has_head, preprocess_values

from .scope_material import OFFSETS, patient_volumes, reslice

MAX_AXIAL_OUT = 0.01  # share of the axial validation slices allowed under the threshold
DENSE_OFFSETS = tuple(range(-48, 49, 8))
FILTERS = (16, 32, 64)  # must match what core/plane.py's forward pass reads: 3x3 convolutions, each pooled by 2
EPOCHS = 12
# Sources whose slices are not all axial: figshare's T1 post-contrast images, inside kaggle-4class's tumour classes,
# were published as axial, coronal and sagittal slices (Cheng et al. 2015; contact sheets of its validation slices
# show roughly half of them sagittal or coronal). They never count as axial by their source: a classifier trained
# without them labels the ones it is sure of, and those join the next fit (PSEUDO_ROUNDS times).
MIXED_PLANES = {"kaggle-4class"}
PSEUDO_LABEL = 0.9
PSEUDO_ROUNDS = 2
MIXED_PER_SOURCE = 2000


def _inputs(images: list[np.ndarray]) -> np.ndarray:
    """Classifier inputs of the images that hold a head (a blank cut is the blank rule's, not a plane)."""
    out = []
    for image in images:
        pre = preprocess_values(image, None, INPUT_SPEC)
        if has_head(pre.head_fraction):
            out.append(pre.image)
    side = INPUT_SPEC.input_size
    return np.stack(out) if out else np.zeros((0, side, side), np.float32)


def _axial(samples, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, sources) of the samples' first frames; with `rng`, each also squashed along a random axis."""
    images, sources = [], []
    for s in samples:
        try:
            values = read_file(Path(s.path))[0].values()
        except (BrainMRIError, OSError, ValueError):
            continue
        variants = [values]
        if rng is not None:
            axis, keep = int(rng.integers(2)), int(rng.integers(20, 64))
            h, w = values.shape
            small = cv2.resize(values, (w, keep) if axis == 0 else (keep, h), interpolation=cv2.INTER_AREA)
            variants.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))
        for v in variants:
            pre = preprocess_values(v, None, INPUT_SPEC)
            if has_head(pre.head_fraction):
                images.append(pre.image)
                sources.append(s.source)
    return np.stack(images), np.array(sources)


def _resliced(volumes: dict[str, np.ndarray], patients: set[str], offsets,
              mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, plane index) of the patients' sagittal and coronal cuts."""
    images, labels = [], []
    for patient in sorted(patients & set(volumes)):
        for k, plane in ((1, "sagittal"), (2, "coronal")):
            cuts = reslice(volumes[patient], plane, offsets)
            cuts += [np.fliplr(c) for c in cuts] if mirror else []
            found = _inputs(cuts)
            images.append(found)
            labels += [k] * len(found)
    return np.concatenate(images), np.array(labels)


def _threshold(p_axial: np.ndarray) -> float:
    """The largest threshold that leaves at most MAX_AXIAL_OUT of the axial slices under it. Pooled over sources: a
    share per source would let a source of 33 slices (kaggle-navoneel's validation part) allow none, and its
    strangest slice would set the threshold for all."""
    kept = np.sort(p_axial)
    return float(kept[int(np.floor(MAX_AXIAL_OUT * len(kept)))]) * (1 - 1e-4)  # a hair under: round-off never flips it


def _shares(clf: PlaneClassifier, axial, axial_sources, cuts, cut_labels, bar_cuts, bar_labels) -> dict:
    inside = lambda x: clf.probabilities(x)[:, 0] >= clf.min_axial  # noqa: E731
    kept = inside(axial) if len(axial) else np.zeros(0, bool)
    out = {"axial_in_scope": {s: {"n": int((axial_sources == s).sum()),
                                  "share": round(float(kept[axial_sources == s].mean()), 4)}
                              for s in sorted(set(axial_sources))}}
    for name, x, y in (("every_8_px", cuts, cut_labels), ("scope_material_cuts", bar_cuts, bar_labels)):
        caught = ~inside(x) if len(x) else np.zeros(0, bool)
        out[f"out_of_scope_{name}"] = {
            PLANES[k]: {"n": int((y == k).sum()), "share": round(float(caught[y == k].mean()), 4)}
            for k in (1, 2) if (y == k).any()}
    return out


def network(seed: int = 0):
    """The Keras network whose weights core/plane.py's forward pass reads (untrained)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((INPUT_SPEC.input_size, INPUT_SPEC.input_size, 1))
    h = inputs
    for filters in FILTERS:
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D(2)(h)
    return keras.Model(inputs, keras.layers.Dense(len(PLANES), activation="softmax")(keras.layers.Flatten()(h)))


def classifier(net, min_axial: float = 0.0) -> PlaneClassifier:
    """The network's weights as the core's PlaneClassifier."""
    import keras

    convs = [layer.get_weights() for layer in net.layers if isinstance(layer, keras.layers.Conv2D)]
    dense_w, dense_b = net.layers[-1].get_weights()
    return PlaneClassifier(tuple(k for k, _b in convs), tuple(b for _k, b in convs), dense_w, dense_b, min_axial)


def _fit(x: np.ndarray, y: np.ndarray, seed: int) -> PlaneClassifier:
    """`network` trained on (N, 32, 32) inputs, each plane drawn up to the largest one's count."""
    import keras

    rng = np.random.default_rng(seed)
    most = max(int((y == k).sum()) for k in range(len(PLANES)))
    order = rng.permutation(np.concatenate([rng.choice(np.flatnonzero(y == k), most) for k in range(len(PLANES))]))
    net = network(seed)
    net.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    net.fit(x[order][..., None], y[order], batch_size=64, epochs=EPOCHS, verbose=0)
    return classifier(net)


def _pseudo_labelled(clf: PlaneClassifier, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inputs the classifier is sure of (a plane at PSEUDO_LABEL or more) with that plane."""
    p = clf.probabilities(x)
    sure = p.max(axis=1) >= PSEUDO_LABEL
    return x[sure], p[sure].argmax(axis=1)


def train(run_dir: Path, lgg: Path, out: Path, to: Path | None = None, per_source: int = 2000, seed: int = 0,
          log=print) -> dict:
    """Fit on the run's training part, set the threshold on validation, measure validation and test; the report,
    with the weights written to `out` (and to `to`, the bundled file, when given)."""
    from .scope_fit import fixed_subset, run_parts

    started = time.time()
    rng = np.random.default_rng(seed)
    parts = run_parts(run_dir)
    volumes = patient_volumes(lgg)
    patients = {part: {s.patient for s in samples if s.source == lgg.name and s.patient}
                for part, samples in parts.items()}
    log(f"plane: {len(volumes)} LGG volumes; patients train/val/test "
        f"{len(patients['train'])}/{len(patients['val'])}/{len(patients['test'])}")
    pure = fixed_subset([s for s in parts["train"] if s.source not in MIXED_PLANES], per_source, seed)
    x_ax, _src = _axial(pure, rng)
    x_cut, y_cut = _resliced(volumes, patients["train"], DENSE_OFFSETS, mirror=True)
    x, y = np.concatenate([x_ax, x_cut]), np.concatenate([np.zeros(len(x_ax), int), y_cut])
    log(f"plane: round 1 on {len(x_ax)} axial inputs, {(y == 1).sum()} sagittal, {(y == 2).sum()} coronal")
    clf = _fit(x, y, seed)
    mixed = fixed_subset([s for s in parts["train"] if s.source in MIXED_PLANES], MIXED_PER_SOURCE, seed)
    x_mixed, _src = _axial(mixed, None)
    for round_ in range(2, 2 + PSEUDO_ROUNDS):
        x_sure, y_sure = _pseudo_labelled(clf, x_mixed)
        counts = {PLANES[k]: int((y_sure == k).sum()) for k in range(len(PLANES))}
        log(f"plane: round {round_} adds {counts} of {len(x_mixed)} slices of {sorted(MIXED_PLANES)}")
        clf = _fit(np.concatenate([x, x_sure]), np.concatenate([y, y_sure]), seed)
    report = {"filters": list(FILTERS), "epochs": EPOCHS,
              "train": {PLANES[k]: int((y == k).sum()) for k in range(len(PLANES))},
              "pseudo_labelled": counts, "pseudo_label_at": PSEUDO_LABEL}
    measured = {}
    for part in ("val", "test"):
        axial, sources = _axial(parts[part], None)
        cuts = _resliced(volumes, patients[part], DENSE_OFFSETS, mirror=False)
        bar = _resliced(volumes, patients[part], OFFSETS, mirror=False)
        measured[part] = (axial, sources, *cuts, *bar)
    val_axial, val_sources = measured["val"][:2]
    axial_only = ~np.isin(val_sources, list(MIXED_PLANES))
    threshold = _threshold(clf.probabilities(val_axial[axial_only])[:, 0])
    clf = replace(clf, min_axial=threshold)
    report["min_axial"] = round(threshold, 6)
    for part, m in measured.items():
        report[part] = _shares(clf, *m)
    report["seconds"] = round(time.time() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "plane.npz").write_bytes(clf.to_bytes())
    if to is not None:
        to.parent.mkdir(parents=True, exist_ok=True)
        to.write_bytes(clf.to_bytes())
    log(json.dumps(report, indent=1))
    return report


def add_plane_parser(sub) -> None:
    """`brainmri-train plane`, registered by trainer/cli.py."""
    p = sub.add_parser("plane", help="train the classifier that reads a header-less slice's plane from its pixels")
    p.add_argument("run_dir", type=Path, help="a training run whose split (split.json) the classifier follows")
    p.add_argument("--lgg", type=Path, default=Path("../shared/data/lgg-flair"),
                   help="the lgg-flair folder, whose patients' volumes are resliced")
    p.add_argument("--out", type=Path, required=True, help="folder for the report and a copy of the weights")
    p.add_argument("--install", action="store_true", help=f"also write the weights to {plane_file()}")
    p.add_argument("--per-source", type=int, default=2000, help="axial training slices per source")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda args: 0 if train(args.run_dir, args.lgg, args.out,
                                                plane_file() if args.install else None, args.per_source,
                                                args.seed) else 1)
