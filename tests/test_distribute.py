"""`brainmri-train train --distribute data` (issue 23.4): Keras' DataParallel over the devices JAX sees, here two
simulated CPU devices. One training step over two devices gives the weights one device gives on the whole batch, the
run records its devices, and a validation set that does not split evenly is still judged on every image once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from trainer.cli import main as brainmri_train
from trainer.distribute import check

from .synthetic import write_labelled_folder

ROOT = Path(__file__).resolve().parents[1]


def _weights(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


def _train(data: Path, config: Path, out: Path, devices: int, distribute: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {
        "KERAS_BACKEND": "jax", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    # One step of one batch; one batch-building process (forking a process that runs JAX can deadlock).
    done = subprocess.run([sys.executable, "-m", "trainer", "train", "--config", str(config), "--data", str(data),
                           "--arch", "cnn", "--img-size", "32", "--batch-size", "8", "--augment", "moderate",
                           "--epochs", "1", "--steps-per-epoch", "1", "--workers", "1", "--distribute", distribute,
                           "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


def test_one_step_on_two_devices_gives_the_weights_of_one(tmp_path):
    data = write_labelled_folder(tmp_path / "data", n_per_class=13, size=40)
    next(iter(sorted((data / "no").glob("*.png")))).unlink()  # 25 images: 7 for validation, an odd count
    config = tmp_path / "run.toml"
    config.write_text("fractions = [0.6, 0.3, 0.1]\nlr = 0.01\nseed = 3\n")
    two = _train(data, config, tmp_path / "two", devices=2, distribute="data")
    one = _train(data, config, tmp_path / "one", devices=1, distribute="none")

    assert two["devices"] == ["cpu:0", "cpu:1"] and one["devices"] is None
    assert two["sessions"][-1]["devices"] == ["cpu:0", "cpu:1"]
    assert two["split_sizes"]["val"] % 2 == 1  # the last validation batch had to be padded to split in two
    w_two, w_one = (_weights(run / "checkpoints" / "last.weights.h5") for run in (tmp_path / "two", tmp_path / "one"))
    assert w_two.keys() == w_one.keys() and len(w_one) > 4
    # The step (Adam, learning rate 0.01) moves weights by about 0.01; the two runs differ by the order in which
    # gradients are summed (measured 1e-5 at most), amplified where Adam divides a tiny gradient by its own size.
    assert max(float(np.abs(w_two[k] - w_one[k]).max()) for k in w_one) <= 1e-4
    # The validation AUC that picks the best epoch is the one a single device measures: padding is left out.
    assert one["best_epoch"] == two["best_epoch"] == 1
    history_two, history_one = (json.loads((run / "checkpoints" / "state.json").read_text())["history"][0]
                                for run in (tmp_path / "two", tmp_path / "one"))
    assert history_two["val_auc"] == pytest.approx(history_one["val_auc"], abs=1e-6)


def test_distributing_needs_jax_and_a_batch_that_splits(tmp_path, capsys):
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax"):
        check("data", 8)  # the test process runs TensorFlow
    check("none", 7)
    data = write_labelled_folder(tmp_path / "data", n_per_class=4, size=40)
    assert brainmri_train(["train", "--data", str(data), "--distribute", "data", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "KERAS_BACKEND=jax" in err and len(err.splitlines()) == 1
    env = os.environ | {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", "from trainer.distribute import check; check('data', 7)"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "batch size (7) must be a multiple of 2" in done.stderr
