from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.calibrate import (Calibration, calibrated, expected_calibration_error, fit_calibration, fit_temperature,
                               sensitivity_threshold, youden_threshold)
from trainer.data import Sample
from trainer.dedup import dhash, group_samples
from trainer.splits import group_kfold, split_groups

from .synthetic import head_image


def test_youden_threshold_on_known_inputs():
    probs = np.array([0.1, 0.2, 0.3, 0.33, 0.6, 0.7, 0.35, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    point = youden_threshold(probs, labels)
    # The classes separate between 0.33 and 0.35: J = 1 only there.
    assert 0.33 < point.threshold < 0.35
    assert point.sensitivity == 1.0 and point.specificity == 1.0


def test_youden_trades_sensitivity_and_specificity():
    probs = np.array([0.1, 0.5, 0.55, 0.9, 0.2, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    point = youden_threshold(probs, labels)
    assert point.sensitivity - (1 - point.specificity) == pytest.approx(0.5)


def test_high_sensitivity_point_reaches_its_target():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    probs = np.clip(labels * 0.3 + rng.random(400) * 0.7, 0, 1)
    point = sensitivity_threshold(probs, labels, 0.95)
    assert point.sensitivity >= 0.95
    assert (probs[labels == 1] >= point.threshold).mean() >= 0.95


def test_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    overconfident = true_logits * 3.0
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.08)


def test_calibration_fit_recovers_a_known_temperature_and_shift():
    rng = np.random.default_rng(3)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    # what class weighting does to a logit: scaled and shifted; a temperature alone cannot undo the shift
    skewed = (true_logits + 1.5) * 2.0
    c = fit_calibration(skewed, labels)
    assert c.temperature == pytest.approx(2.0, rel=0.08) and c.bias == pytest.approx(-1.5, abs=0.1)
    t_only = Calibration(fit_temperature(skewed, labels))
    assert (expected_calibration_error(calibrated(skewed, c), labels)
            < 0.5 * expected_calibration_error(calibrated(skewed, t_only), labels))


def test_ece_of_perfect_calibration_is_small_and_of_bad_is_large():
    rng = np.random.default_rng(2)
    p = rng.random(50000)
    y = (rng.random(50000) < p).astype(int)
    assert expected_calibration_error(p, y) < 0.01
    assert expected_calibration_error(np.clip(p * 0.5, 0, 1), y) > 0.2


def test_focal_loss_matches_hand_computed_values():
    import keras

    alpha, gamma = 0.25, 2.0
    y = np.array([[1.0], [0.0], [1.0]], np.float32)
    p = np.array([[0.9], [0.2], [0.3]], np.float32)
    loss = keras.losses.BinaryFocalCrossentropy(alpha=alpha, gamma=gamma, apply_class_balancing=True,
                                                reduction=None)
    got = np.asarray(loss(y, p)).reshape(-1)
    pt = np.where(y[:, 0] == 1, p[:, 0], 1 - p[:, 0])
    a = np.where(y[:, 0] == 1, alpha, 1 - alpha)
    expected = -a * (1 - pt) ** gamma * np.log(pt)
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def _samples(n, source="s", patient=None):
    return [Sample(path=f"{source}{i}.png", label=i % 2, source=source, patient=patient(i) if patient else None)
            for i in range(n)]


def test_near_duplicates_and_patients_are_grouped():
    base = head_image(64, 64, seed=1)
    dup = base.copy()
    dup[0, 0] += 1  # a near copy
    other = head_image(64, 64, axes=(20, 28), seed=2, tumour=(30, 30, 8))
    samples = _samples(3) + _samples(4, "lgg", patient=lambda i: f"p{i // 2}")
    hashes = [dhash(base), dhash(dup), dhash(other)] + [dhash(np.zeros((64, 64)))] * 4
    g = group_samples(samples, hashes, max_distance=4).groups
    assert g[0] == g[1] and g[2] != g[0]
    assert g[3] == g[4] and g[5] == g[6] and g[3] != g[5]  # blank slices of two patients stay apart


def test_splits_never_straddle_groups_and_stay_stratified():
    rng = np.random.default_rng(0)
    samples = [Sample(path=f"{i}.png", label=int(rng.random() < 0.4), source=f"s{i % 3}") for i in range(600)]
    groups = [i // 3 for i in range(600)]
    split = split_groups(samples, groups, (0.7, 0.15, 0.15), seed=0)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert sum(map(len, parts)) == 600 and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    where = {}
    for k, part in enumerate(parts):
        for i in part:
            assert where.setdefault(groups[i], k) == k
    assert 0.6 < len(split.train) / 600 < 0.8
    folds = group_kfold(samples, groups, k=5)
    assert sorted(i for f in folds for i in f) == list(range(600))
    for f in folds:
        assert len({groups[i] for i in f} & {groups[i] for g in folds if g is not f for i in g}) == 0
        assert 100 <= len(f) <= 140


def test_augmentation_moves_the_tumour_mask_with_the_image():
    from trainer.augment import build_augmenter

    augment = build_augmenter("heavy")
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64), np.uint8)
    img[10:20, 40:55] = 255
    mask = (img > 0).astype(np.uint8) * 255
    moved = 0
    for _ in range(20):
        out, out_mask = augment(img, mask, rng)
        assert out_mask.shape == mask.shape
        bright, inside = out > 128, out_mask > 128
        assert (bright & inside).sum() >= 0.6 * max(1, bright.sum())
        moved += not np.array_equal(out_mask, mask)
    assert moved >= 10
    out, none = augment(img, None, rng)
    assert none is None and out.shape == img.shape


def test_lesion_targets_give_each_cell_its_tumour_share_and_whether_it_is_known():
    from trainer.dataset import LesionTargets

    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, :4, :4] = 255
    targets = LesionTargets(masks, np.array([True, False]), grid=2).batch(masks, np.array([0, 1]))
    assert targets.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(targets[0, ..., 0], [[1, 0], [0, 0]])
    np.testing.assert_allclose(targets[..., 1], [np.ones((2, 2)), np.zeros((2, 2))])


def test_centre_lesion_targets_light_the_cell_whose_centre_the_tumour_covers():
    from trainer.dataset import LesionTargets

    # 16-pixel cells: a rim of tumour along the top of cell (0, 0), away from its centre, and a small blob on the
    # centre of cell (0, 1). The map draws each cell's value at its centre, so "centre" should prefer (0, 1).
    masks = np.zeros((1, 32, 32), np.uint8)
    masks[0, 0:4, 0:16] = 255
    masks[0, 6:10, 22:26] = 255
    share = LesionTargets(masks, np.array([True]), grid=2).batch(masks, np.array([0]))[0, ..., 0]
    centre = LesionTargets(masks, np.array([True]), grid=2, target="centre").batch(masks, np.array([0]))[0, ..., 0]
    np.testing.assert_allclose(share, [[0.25, 0.0625], [0.0, 0.0]], atol=1e-3)
    np.testing.assert_allclose(centre, [[0.0, 0.25], [0.0, 0.0]], atol=1e-3)


def test_lesion_loss_ignores_images_whose_tumour_region_is_unknown():
    from trainer.architectures import lesion_loss

    share = np.zeros((2, 2, 2, 1), np.float32)
    share[0, 0, 0] = 1
    known = np.stack([np.ones((2, 2, 1)), np.zeros((2, 2, 1))]).astype(np.float32)
    y_true = np.concatenate([share, known], axis=-1)
    good = np.where(share > 0, 6.0, -6.0).astype(np.float32)
    bad = -good
    loss_good, loss_bad = np.asarray(lesion_loss(y_true, good)), np.asarray(lesion_loss(y_true, bad))
    assert loss_good[0] < 0.01 < 5 < loss_bad[0]
    assert loss_good[1] == loss_bad[1] == 0


def test_mid_brain_keeps_the_slices_near_each_patients_largest_head():
    from trainer.evaluate import mid_brain

    samples = [Sample(Path(f"{p}{i}.png"), 0, "lgg", patient=p) for p in "ab" for i in range(4)]
    samples.append(Sample(Path("kaggle.png"), 1, "kaggle"))
    heads = np.array([0.1, 0.3, 0.5, 0.6, 0.2, 0.19, 0.05, 0.1, 0.9])
    assert mid_brain(samples, heads).tolist() == [False, False, True, True, True, True, False, False, False]


def test_leave_out_rows_compare_recipes_by_value_and_flag_old_epoch_choice(tmp_path):
    """A key an older trainer did not write had its default; a run without the early-stopping record is flagged."""
    import json

    from trainer.card import _leave_out_lines

    cfg = {"arch": "cnn", "img_size": 64, "epochs": 5, "lesion_weight": 0.0}
    held = {"excluded_sources": ["lgg"], "validation_by_source": {"lgg": {"auc": {"value": 0.7, "ci95": [0.6, 0.8]}}}}
    rows = {}
    for name, run_cfg, res in (("old", {"arch": "cnn", "img_size": 64, "epochs": 5}, held),
                               ("new", cfg, {**held, "early_stopping_images": 10}),
                               ("other", {**cfg, "lesion_weight": 1.0}, {**held, "early_stopping_images": 10})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(run_cfg))
        (tmp_path / name / "results.json").write_text(json.dumps(res))
        mid = {"new": {"val": {"lgg": {"auc": {"value": 0.45, "ci95": [0.3, 0.6]}}}}}
        rows[name] = next(line for line in _leave_out_lines([tmp_path / name], cfg, mid) if line.startswith("| lgg"))
    assert "differs" not in rows["old"] and "optimistic" in rows["old"]
    assert "differs" not in rows["new"] and "optimistic" not in rows["new"] and "0.700 (0.600-0.800)" in rows["new"]
    assert rows["new"].endswith("| 0.450 (0.300-0.600) / - |") and rows["old"].endswith("| - / - |")
    assert "differs from this model's" in rows["other"]
    (tmp_path / "warm").mkdir()
    (tmp_path / "warm" / "config.json").write_text(json.dumps({**cfg, "init_from": "resources/models/brainmri-x"}))
    (tmp_path / "warm" / "results.json").write_text(json.dumps({**held, "early_stopping_images": 10}))
    warm = next(line for line in _leave_out_lines([tmp_path / "warm"], cfg) if line.startswith("| lgg"))
    assert "weights of `brainmri-x`" in warm and "optimistic" in warm
    scaled = {**cfg, "intensity_scale": "median"}  # the scale changes what the model sees: another recipe
    assert "differs from this model's" in next(line for line in _leave_out_lines([tmp_path / "new"], scaled)
                                               if line.startswith("| lgg"))


def test_random_intensity_curve_changes_grey_levels_but_keeps_the_background_black():
    from trainer.augment import random_intensity_curve

    rng = np.random.default_rng(3)
    img = np.zeros((32, 32), np.uint8)
    img[8:24, 8:24] = 100
    img[12:18, 12:18] = 200
    inverted = 0
    for _ in range(40):
        out = random_intensity_curve(img, rng)
        assert (out[img == 0] == 0).all() and (out[img > 0] > 0).all()
        # one grey level maps to one grey level: shapes survive, brightness does not
        assert len(np.unique(out[img == 100])) == 1 and len(np.unique(out[img == 200])) == 1
        inverted += int(out[15, 15]) < int(out[9, 9])
    assert 0 < inverted < 40


def test_training_batches_have_one_shape_and_evaluation_sees_every_image_once():
    from trainer.dataset import batch_order

    rng = np.random.default_rng(0)
    order = batch_order(30, 8, rng)
    assert len(order) == 24 and len(set(order.tolist())) == 24  # the ragged end is dropped, nothing repeats
    assert len(batch_order(5, 8, rng)) == 8 and set(batch_order(5, 8, rng).tolist()) == set(range(5))
    np.testing.assert_array_equal(batch_order(30, 8, None), np.arange(30))


def test_training_sequence_sends_uint8_single_channel_batches_of_one_shape():
    from trainer.dataset import make_sequence

    images = np.random.default_rng(1).integers(0, 255, (21, 16, 16), dtype=np.uint8)
    seq = make_sequence(images, np.arange(21) % 2, np.ones(21, np.float32), 4, 8, shuffle=True)
    shapes = {seq[i][0].shape for i in range(len(seq))}
    assert len(seq) == 5 and shapes == {(4, 8, 8, 1)} and seq[0][0].dtype == np.uint8
    val = make_sequence(images, np.arange(21) % 2, np.ones(21, np.float32), 8, 16, shuffle=False)
    assert [len(val[i][1]) for i in range(len(val))] == [8, 8, 5]


@pytest.mark.parametrize("normalisation", ["unit", "resnet50"])
def test_the_training_graph_normalises_uint8_as_the_core_does(normalisation):
    import keras

    from brainmri_desktop.core.preprocess import to_model_input
    from trainer.train_graph import uint8_trainee

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(inputs))
    images = np.random.default_rng(2).integers(0, 256, (2, 12, 12), dtype=np.uint8)
    expected = np.asarray(model(to_model_input(images / 255.0, normalisation)))
    got = np.asarray(uint8_trainee(model, normalisation)(images[..., None]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_training_curves_show_the_classifier_auc_of_a_lesion_loss_run(monkeypatch):
    from trainer import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    plots.training_curves([{"epoch": 1, "loss": 1.0, "val_loss": 1.1, "prob_auc": 0.6, "val_prob_auc": 0.7},
                           {"epoch": 2, "loss": 0.8, "val_loss": 0.9, "prob_auc": 0.7, "val_prob_auc": 0.8}], Path("x"))
    labels = [line.get_label() for line in figures[0].axes[1].get_lines()]
    assert labels == ["prob_auc", "val_prob_auc"]


def test_card_says_where_the_run_trained_and_only_the_sources_it_saw():
    from trainer.card import _compute_line, _limitations, _sources_lines

    session = {"backend": "jax", "device": "JAX, GPU (NVIDIA H200)", "cpu_cores": 16, "precision": "mixed_bfloat16",
               "epochs": [0, 40], "seconds": 240.0, "command": "brainmri-train train --config c.toml"}
    res = {"epochs_trained": 40, "best_epoch": 31, "epoch_seconds": 240.0, "sessions": [session],
           "data": {"by_source": {"lgg-flair": {"patients": 75}, "br35h": {"patients": 0}}},
           "excluded_sources": ["br35h"], "duplicate_groups": {"max_distance": 4, "links": 1, "images_merged": 2},
           "split_sizes": {"train": 1, "val": 1, "test": 1}}
    line = _compute_line(res)
    assert "epochs 1-40 on JAX, GPU (NVIDIA H200), mixed_bfloat16, 4.0 min" in line
    assert "2 CPU cores" not in _compute_line({**res, "sessions": []})
    limits = "\n".join(_limitations(res, {"preprocessing": {}}))
    assert "slices of lgg-flair only" in limits and "FLAIR" not in limits.replace("lgg-flair", "")
    assert "kaggle-navoneel" not in limits and "No patient information in br35h" in limits
    split = _sources_lines(res)[0]
    assert "lgg-flair by patient, br35h by near-duplicate group" in split and "Nickparvar" not in split


# Run in a fresh interpreter under JAX, whose threads are running (a computation has run) before the pool starts:
# forking such a process could deadlock, and the subprocess's timeout turns a hang into a failure.
_BATCHES_UNDER_JAX = """
import json, multiprocessing, sys
import jax.numpy as jnp, numpy as np
from trainer.augment import build_augmenter
from trainer.dataset import LesionTargets, make_sequence, uint8_batch
jnp.ones((64, 64)).sum().block_until_ready()
rng = np.random.default_rng(0)
images = rng.integers(0, 255, (40, 32, 32), dtype=np.uint8)
lesion = LesionTargets((rng.random((40, 32, 32)) > 0.5).astype(np.uint8) * 255, np.arange(40) % 3 > 0, 4)
seqs = [make_sequence(images, np.arange(40) % 2, np.linspace(0.5, 1, 40, dtype=np.float32), 8, 16,
                      build_augmenter("heavy"), seed=7, lesion=lesion, workers=w) for w in (1, 2, 1)]
for seq in seqs:
    seq.epoch = 3  # as a resumed run sets it
    seq._order()
same, augmented = [], []
for epoch in range(2):
    # The third sequence is asked in reverse order: a batch depends on its seed alone, not on the batches before it.
    backwards = [seqs[2][i][0] for i in reversed(range(len(seqs[2])))][::-1]
    for i in range(len(seqs[0])):
        (x1, y1, w1), (x2, y2, w2) = seqs[0][i], seqs[1][i]
        same.append(all(np.array_equal(a, b) for a, b in [(x1, x2), (x1, backwards[i]), (y1["lesion"], y2["lesion"]),
                                                          (y1["prob"], y2["prob"]), (w1["prob"], w2["prob"])]))
        augmented.append(not np.array_equal(x2, uint8_batch(images[seqs[0]._indices(i)], 16)))
    for seq in seqs:
        seq.on_epoch_end()
folder = str(seqs[1].pool.folder)
workers = len(multiprocessing.active_children())
seqs[1].close()
left = len(multiprocessing.active_children())
print(json.dumps({"same": same, "augmented": augmented, "workers": workers, "left": left, "folder": folder}))
if sys.argv[1] == "again":  # a pool left open ends with the interpreter, its files too
    seqs[1][0]
    print(json.dumps({"folder": str(seqs[1].pool.folder)}))
"""


@pytest.mark.parametrize("ending", ["close", "again"])
def test_batches_built_by_worker_processes_under_jax_equal_those_of_one_worker(tmp_path, ending):
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _BATCHES_UNDER_JAX, ending], cwd=Path(__file__).parents[1], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    report = lines[0]
    assert report["same"] == [True] * 10 and report["augmented"] == [True] * 10
    assert report["workers"] == 2 and report["left"] == 0
    for line in lines:
        assert Path(line["folder"]).parent == tmp_path and not Path(line["folder"]).exists()
    assert len(lines) == (2 if ending == "again" else 1)
    assert list(tmp_path.iterdir()) == []


def test_the_augmenter_makes_no_network_call():
    """albumentations asks PyPI for its latest version when imported unless told not to; the trainer imports it in
    every batch worker, on machines with no network too."""
    script = ("import sys, urllib.request\n"
              "def refuse(*a, **k):\n    raise SystemExit('network call: ' + repr(a[1:2]))\n"
              "urllib.request.OpenerDirector.open = refuse\n"
              "from trainer.augment import build_augmenter\n"
              "assert build_augmenter('heavy') is not None\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]
