"""The GPU recipe (docs/GPU_TRAINING.md) at a tiny scale on this machine: data packed to travel, the device script run
in a scratch folder under JAX (stopped by its time budget, then resumed), the run brought back and exported here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.config import read_config
from trainer.pack import load_packed
from trainer.remote import join_files, pack_data, split_file

from .synthetic import write_labelled_folder

ROOT = Path(__file__).resolve().parents[1]
# The GPU machine has no TensorFlow, Qt or PACS libraries: the device script runs here with them made unimportable.
ABSENT_THERE = """
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tensorflow", "PySide6", "highdicom", "pynetdicom", "dicomweb_client"}:
            raise ModuleNotFoundError(f"No module named {name!r} (absent on the GPU machine)")
sys.meta_path.insert(0, _Absent())
"""


def test_split_pieces_fit_the_limit_and_join_back_exactly(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    (tmp_path / "big.bin").write_bytes(data)
    pieces = split_file(tmp_path / "big.bin", tmp_path, 3_000, "big.part")
    assert [p["name"] for p in pieces] == ["big.part.000", "big.part.001", "big.part.002", "big.part.003"]
    assert all((tmp_path / p["name"]).stat().st_size <= 3_000 for p in pieces)
    join_files(tmp_path, {"back/big.bin": pieces}, tmp_path)
    assert (tmp_path / "back" / "big.bin").read_bytes() == data
    (tmp_path / "big.part.002").write_bytes(b"x" * 3_000)
    with pytest.raises(ValueError, match="big.part.002"):
        join_files(tmp_path, {"again.bin": pieces}, tmp_path)
    (tmp_path / "big.part.001").unlink()
    with pytest.raises(FileNotFoundError, match="big.part.001"):
        join_files(tmp_path, {"again.bin": pieces}, tmp_path)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    data = write_labelled_folder(root / "synthetic", n_per_class=16, size=48)
    config = root / "config.toml"
    config.write_text(f'arch = "cnn"\nimg_size = 32\nepochs = 2\nbatch_size = 8\naugment = "moderate"\n'
                      f'workers = 2\nbootstrap = 20\n\n[[data]]\npath = "{data}"\n')
    return config


def test_packed_data_gives_the_samples_and_cache_of_the_data_folders(tiny_config, tmp_path):
    from trainer.train import prepare

    cfg = read_config(tiny_config)
    pack_data(cfg, tmp_path / "pack", part_mb=0.01, log=lambda *_: None)
    assert len(list((tmp_path / "pack").glob("data-*.npz"))) > 1
    samples, cache = load_packed(tmp_path / "pack", cfg)
    here = prepare(cfg, None)
    described = lambda ss: [(str(s.path), s.label, s.source, s.patient) for s in ss]  # noqa: E731
    assert described(samples) == described(here.samples)
    # the images are the cache's through JPEG at the default quality, no more and no less
    import cv2

    jpeg = [cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])[1], 0) for im in here.cache.images]
    np.testing.assert_array_equal(cache.images, np.stack(jpeg))
    np.testing.assert_array_equal(cache.hashes, here.cache.hashes)
    np.testing.assert_array_equal(cache.masks, here.cache.masks)
    with pytest.raises(ValueError, match="preprocessing"):
        load_packed(tmp_path / "pack", cfg.override(img_size=48))


def _staged_call(config: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A call folder as pack.sh makes it (the config's data packed, the config beside it) and the environment of
    the GPU machine: scratch WORK and OUT folders, JAX, and no TensorFlow, Qt or PACS libraries."""
    call = tmp_path / "call1"
    pack_data(read_config(config), call / "data", log=lambda *_: None)
    (call / "config.toml").write_bytes(config.read_bytes())
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent" / "sitecustomize.py").write_text(ABSENT_THERE)
    return call, {**os.environ, "KERAS_BACKEND": "jax", "WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out"),
                  "PYTHON": sys.executable, "PYTHONPATH": str(tmp_path / "absent")}


def test_device_script_trains_under_jax_without_tensorflow_resumes_and_the_run_exports_here(tiny_config, tmp_path):
    from brainmri_desktop.cli import main as brainmri
    from trainer.cli import main as brainmri_train
    from trainer.remote import unpack_run

    call, env = _staged_call(tiny_config, tmp_path)
    script = ["bash", str(ROOT / "scripts" / "gpu" / "run_on_device.sh"), str(call)]
    first = subprocess.run([*script, "--time-budget", "0.001"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 3, first.stdout[-2000:] + first.stderr[-2000:]
    assert not (tmp_path / "out" / "run-index.json").exists()
    second = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    back = unpack_run(tmp_path / "out", tmp_path / "run")
    sessions = json.loads((back / "results.json").read_text())["sessions"]
    assert [s["epochs"] for s in sessions] == [[0, 1], [1, 2]] and {s["backend"] for s in sessions} == {"jax"}
    models = tmp_path / "models"
    # a tiny run, under export's bar
    assert brainmri_train(["export", str(back), "--to", str(models), "--id", "from-jax", "--force"]) == 0
    card = (models / "from-jax" / "MODEL_CARD.md").read_text()
    assert "epoch 1 on JAX, CPU" in card and "--time-budget 0.001" in card
    image = next((Path(str(read_config(tiny_config).data[0].path)) / "yes").iterdir())
    assert brainmri(["predict", "--models-dir", str(models), "--model", "from-jax", "--out",
                     str(tmp_path / "p.csv"), str(image)]) == 0


def test_pair_script_brings_a_model_and_its_leave_one_out_twin_from_one_staged_pack(tmp_path):
    """Both runs pause at their time budget and are finished at the epoch they reached, in the one call that brings
    both back; the model exports here with the twin's figures in its card."""
    from trainer.cli import main as brainmri_train
    from trainer.remote import unpack_run

    data = [write_labelled_folder(tmp_path / name, n_per_class=12, size=48, seed=k)
            for k, name in enumerate(("seen", "left"))]
    config = tmp_path / "config.toml"
    # a cell-scored model: its layers live in the core, and a process that loads the run must know them
    config.write_text('arch = "cnn"\nimg_size = 32\ncell_score = true\nepochs = 3\nbatch_size = 8\n'
                      'augment = "moderate"\nworkers = 1\nbootstrap = 20\n' + "".join(f'\n[[data]]\npath = "{d}"\n' for d in data))
    call, env = _staged_call(config, tmp_path)
    script = ["bash", str(ROOT / "scripts" / "gpu" / "pair_on_device.sh")]
    first = subprocess.run([*script, str(call), "left", "0.001"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "exit status: run 0, twin 0" in first.stdout
    # a tiny run's pieces are few: the twin's come back in the same call
    twin = unpack_run(tmp_path / "out" / "twin", tmp_path / "twin")
    twin_results = json.loads((twin / "results.json").read_text())
    assert twin_results["excluded_sources"] == ["left"] and twin_results["epochs_trained"] == 1
    assert json.loads((twin / "config.json").read_text())["epochs"] == 1  # finished where the budget paused it
    run = unpack_run(tmp_path / "out", tmp_path / "run")
    assert json.loads((run / "results.json").read_text())["excluded_sources"] == []
    # and the second form still hands them over, for pieces that did not fit
    env["OUT"] = str(tmp_path / "out2")
    (tmp_path / "out2").mkdir()
    second = subprocess.run([*script, "--twin"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == sorted(
        p.name for p in (tmp_path / "out" / "twin").iterdir())
    models = tmp_path / "models"
    assert brainmri_train(["export", str(run), "--to", str(models), "--id", "pair", "--force",
                           "--leave-out", str(twin)]) == 0
    card = (models / "pair" / "MODEL_CARD.md").read_text()
    assert "| left | `twin` | cnn 32 px, 1 epochs |" in card
