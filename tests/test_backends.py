"""The model path on every Keras backend the CI installs: a model trained and exported under JAX predicts the same
probabilities and Grad-CAM maps under JAX and under TensorFlow (the Keras backend is fixed per process, so each runs
in its own subprocess). Grad-CAM's gradient is also checked in-process against TensorFlow's GradientTape at a layer
that a residual path bypasses."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .synthetic import write_labelled_folder

PREDICT = "import sys; from brainmri_desktop.cli import main; sys.exit(main(sys.argv[1:]))"


def _run(backend: str, *args: str) -> subprocess.CompletedProcess:
    # the user's start-up, not the test session's: no TensorFlow log level set beforehand
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | {"KERAS_BACKEND": backend}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, f"{backend} {args[:3]} failed:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def jax_package(tmp_path_factory):
    """A tiny CNN trained and exported under JAX, and a few images to triage."""
    root = tmp_path_factory.mktemp("jax")
    data = write_labelled_folder(root / "data", n_per_class=12, size=40)
    # one batch-building process: worker processes forked from a process that runs JAX can deadlock
    _run("jax", "-m", "trainer", "train", "--data", str(data), "--arch", "cnn", "--img-size", "32",
         "--batch-size", "8", "--augment", "moderate", "--epochs", "2", "--workers", "1", "--out", str(root / "run"))
    # --force: a tiny run's calibration sits at the fit's bound, which export refuses without it
    _run("jax", "-m", "trainer", "export", str(root / "run"), "--to", str(root / "models"), "--id", "jax-cnn", "--force")
    # A 20-image run separates its few validation slices perfectly, and the calibration fitted on them saturates every
    # probability at 1.0; a unit temperature keeps the raw logits in the probabilities being compared (the manifest is
    # not among the hashed files).
    manifest = root / "models" / "jax-cnn" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"temperature": 1.0, "logit_bias": 0.0}))
    images = sorted((data / "yes").iterdir())[:3] + sorted((data / "no").iterdir())[:3]
    return root / "models", images


def _predict(backend: str, models: Path, images: list[Path], cams: Path):
    done = _run(backend, "-c", PREDICT, "predict", "--models-dir", str(models), "--model", "jax-cnn",
                "--runtime", "keras", "--tta", "3", "--full-tta", "--cam-dir", str(cams), *map(str, images))
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["error"] for r in rows] == [""] * len(images)
    return rows, done.stderr


def test_jax_trained_package_predicts_the_same_under_jax_and_tensorflow(jax_package, tmp_path):
    models, images = jax_package
    jax_rows, jax_log = _predict("jax", models, images, tmp_path / "cams-jax")
    tf_rows, tf_log = _predict("tensorflow", models, images, tmp_path / "cams-tf")
    # the device line names the backend; TensorFlow starts without its cuInit error on a machine with no GPU driver
    assert "(JAX, " in jax_log and "(TensorFlow, " in tf_log
    assert "cuInit" not in tf_log
    assert [r["path"] for r in jax_rows] == [r["path"] for r in tf_rows]
    jax_p = np.array([float(r["probability"]) for r in jax_rows])
    tf_p = np.array([float(r["probability"]) for r in tf_rows])
    assert np.abs(jax_p - tf_p).max() <= 1e-4
    assert jax_p.std() > 1e-3 and 0 < jax_p.min() and jax_p.max() < 1  # not a comparison of saturated constants
    maps = [(np.load(j["cam_path"]), np.load(t["cam_path"])) for j, t in zip(jax_rows, tf_rows)]
    assert all(jax_map.shape == tf_map.shape == (40, 40) for jax_map, tf_map in maps)
    assert max(float(jax_map.max()) for jax_map, _ in maps) > 0.5
    assert max(float(np.abs(jax_map - tf_map).max()) for jax_map, tf_map in maps) <= 1e-3


def test_gradcam_at_a_bypassed_layer_is_the_gradient_of_the_whole_model(tmp_path):
    """At a layer whose output a residual path also skips, the head that Grad-CAM differentiates must recompute that
    path from the image: its map equals the GradientTape of the complete model, taken at that layer."""
    import keras
    import tensorflow as tf

    from brainmri_desktop.core.gradcam import GradCAM
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.manifest import Manifest, OperatingPoint
    from brainmri_desktop.core.packages import discover, write_package
    from brainmri_desktop.core.preprocess import PreprocessSpec, to_model_input

    # Seeded: with some random weights every channel's weight is negative and the whole map is zero (nothing to compare)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3), name="image")
    stem = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="stem")(inputs)
    inner = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="inner")(stem)
    merged = keras.layers.Add(name="merge")([stem, keras.layers.Conv2D(6, 3, padding="same", name="out")(inner)])
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(keras.layers.ReLU(name="merge_relu")(merged))
    logit = keras.layers.Dense(1, name="logit")(pooled)
    net = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prob")(logit))
    point = OperatingPoint(0.5, "youden_j", "synthetic", 0.9, 0.8)
    write_package(tmp_path / "residual", Manifest(
        id="residual", name="Residual", architecture="cnn", preprocessing=PreprocessSpec(input_size=24),
        gradcam_layer="inner", temperature=1.0, threshold=point, files={}), net)
    model = LoadedModel.load(next(e for e in discover([tmp_path]) if e.ok and e.manifest.id == "residual"))

    images = np.random.default_rng(3).random((5, 24, 24), dtype=np.float32)
    x = to_model_input(images, model.manifest.preprocessing.model_normalisation)
    whole = keras.Model(model.keras_model.input, [model.keras_model.get_layer("inner").output,
                                                 model.keras_model.get_layer("logit").output])
    with tf.GradientTape() as tape:
        features, logits = whole(x, training=False)
        tape.watch(features)
        score = tf.reduce_sum(logits)
    gradients = tape.gradient(score, features).numpy()
    expected = np.maximum((gradients.mean(axis=(1, 2), keepdims=True) * features.numpy()).sum(-1), 0)
    expected = expected / np.maximum(expected.max(axis=(1, 2), keepdims=True), 1e-12)
    maps = GradCAM(model).input_maps(images)  # the inner layer keeps the input size, so no resize in between
    assert expected.max() > 0 and np.abs(maps - expected).max() < 1e-5
