"""The application's inference through ONNX Runtime (issue 24): every bundled package carries graphs that give the
Keras model's probabilities and Grad-CAM maps; a trained model's export writes and checks them; a command that runs
graphs never loads TensorFlow; asking for a runtime a package or the install cannot give is a clear error."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brainmri_desktop.cli import main as brainmri
from brainmri_desktop.core import runtime
from brainmri_desktop.core.demo import write_series
from brainmri_desktop.core.errors import ModelPackageError
from brainmri_desktop.core.gradcam import GradCAM
from brainmri_desktop.core.inference import LoadedModel
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.onnx_graphs import MAX_GRADCAM_DIFF, MAX_PROBABILITY_DIFF
from brainmri_desktop.core.packages import bundled_models_dir, discover, sha256_file
from trainer.cli import main as brainmri_train

from .synthetic import write_labelled_folder

BUNDLED = sorted(p.name for p in bundled_models_dir().iterdir() if (p / "manifest.json").exists())


@pytest.fixture(autouse=True)
def _runtime_restored(monkeypatch):
    monkeypatch.setenv(runtime.ENV_RUNTIME, "auto")  # `--runtime` sets it for the process; undone after each test


def _predict(runtime_name: str, model_id: str, study: Path, out: Path, *extra: str) -> dict[str, dict]:
    assert brainmri(["predict", "--runtime", runtime_name, "--model", model_id, "--cam-dir", str(out / "cams"),
                     "--out", str(out / "rows.csv"), *extra, str(study)]) == 0
    return {f"{r['path']}#{r['frame']}": r for r in csv.DictReader((out / "rows.csv").open())}


@pytest.mark.parametrize("model_id", BUNDLED)
def test_bundled_packages_give_the_same_probabilities_and_maps_under_both_runtimes(model_id, tmp_path, capsys):
    write_series(tmp_path / "study", n=10, size=160, tumour_slices=(3, 4, 5))
    rows = {name: _predict(name, model_id, tmp_path / "study", tmp_path / name, "--tta", "2", "--full-tta")
            for name in ("onnx", "keras")}
    log = capsys.readouterr().err
    assert "(ONNX Runtime, " in log and "(TensorFlow, " in log  # each run says what computed it
    onnx, keras = rows["onnx"], rows["keras"]
    assert onnx.keys() == keras.keys() and len(onnx) == 10
    p = {k: np.array([float(r[key]["probability"]) for key in sorted(r)]) for k, r in rows.items()}
    assert np.abs(p["onnx"] - p["keras"]).max() <= MAX_PROBABILITY_DIFF
    for column in ("flagged", "out_of_scope", "warning"):  # the scope guard reads the same features on both
        assert [onnx[k][column] for k in sorted(onnx)] == [keras[k][column] for k in sorted(keras)]
    maps = [(np.load(onnx[k]["cam_path"]), np.load(keras[k]["cam_path"])) for k in sorted(onnx)]
    assert max(float(a.max()) for a, _ in maps) > 0.5  # maps with something in them, not zeros against zeros
    assert max(float(np.abs(a - b).max()) for a, b in maps) <= MAX_GRADCAM_DIFF


@pytest.mark.parametrize("model_id", BUNDLED)
def test_bundled_packages_list_their_graphs_and_the_check_made_at_export(model_id):
    entry = find_model(discover([]), model_id)
    m = entry.manifest
    for name in (m.graph_file, m.gradcam_graph_file):
        assert name and m.files[name] == sha256_file(entry.path / name)
    check = m.graph_check
    assert check["probability_max_diff"] <= MAX_PROBABILITY_DIFF and check["gradcam_max_diff"] <= MAX_GRADCAM_DIFF
    assert len(check["reference_probabilities"]) == 8
    assert LoadedModel.load(entry).runtime == "onnx"  # what the application runs by default


def test_predict_through_the_graphs_never_loads_tensorflow(tmp_path):
    write_series(tmp_path / "study", n=3, size=96, tumour_slices=(1,))
    code = ("import sys; from brainmri_desktop.cli import main; rc = main(sys.argv[1:]); "
            "print('loaded:', sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules)); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "predict", "--out", str(tmp_path / "r.csv"),
                           "--cam-dir", str(tmp_path / "cams"), "--report", str(tmp_path / "r.pdf"),
                           str(tmp_path / "study")], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded: []" in done.stdout
    assert "(ONNX Runtime, CPU (" in done.stderr
    assert len(list((tmp_path / "cams").glob("*.npy"))) == 3 and (tmp_path / "r.pdf").stat().st_size > 0


def test_asking_for_graphs_a_package_lacks_is_an_error_naming_it(model_dir, tmp_path, capsys, monkeypatch):
    write_series(tmp_path / "study", n=2, size=64)
    assert brainmri(["predict", "--runtime", "onnx", "--models-dir", str(model_dir), "--model", "tiny-cnn",
                     str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert "tiny-cnn" in err and "has no ONNX graphs" in err and "add-graphs" in err
    # auto falls back to Keras for it, and says so on the device line
    monkeypatch.setenv(runtime.ENV_RUNTIME, "auto")  # as a new process starts; --runtime set it for this one
    assert brainmri(["predict", "--models-dir", str(model_dir), "--model", "tiny-cnn", "--out",
                     str(tmp_path / "r.csv"), str(tmp_path / "study")]) == 0
    assert "(TensorFlow, " in capsys.readouterr().err


def test_a_graph_whose_bytes_changed_is_refused_with_its_package(tmp_path):
    import shutil

    source = find_model(discover([]), "brainmri-cnn-small").path
    copy = tmp_path / "models" / "brainmri-cnn-small"
    shutil.copytree(source, copy)
    graph = copy / "gradcam.onnx"
    graph.write_bytes(graph.read_bytes()[:-10])
    (entry,) = [e for e in discover([copy]) if e.path == copy]
    assert not entry.ok and "gradcam.onnx" in entry.error.reason


def _trained_run(tmp_path: Path, *extra: str) -> Path:
    data = write_labelled_folder(tmp_path / "data" / "synthetic", n_per_class=16, size=48)
    run = tmp_path / "run"
    assert brainmri_train(["train", "--data", str(data), "--arch", "cnn", "--img-size", "32", "--batch-size", "8",
                           "--augment", "moderate", "--epochs", "2", "--out", str(run), *extra]) == 0
    return run


@pytest.mark.parametrize("extra", [(), ("--cell-score",)], ids=["pooled-head", "cell-scored"])
def test_export_writes_graphs_that_agree_with_keras(tmp_path, extra):
    """The CNN's pooled head exercises the max-pool and ReLU gradients the exporter writes as forward operations; the
    cell-scored head, the shape and LogSumExp gradients."""
    run, models = _trained_run(tmp_path, *extra), tmp_path / "models"
    assert brainmri_train(["export", str(run), "--to", str(models), "--id", "fresh", "--force"]) == 0
    entry = find_model(discover([models]), "fresh")
    recorded = entry.manifest.graph_check["reference_probabilities"]
    graphs, keras_model = LoadedModel.load(entry, "onnx"), LoadedModel.load(entry, "keras")
    images = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    images[:, :6] = 0  # a blank margin, as preprocessing leaves outside the head
    assert np.abs(graphs.logits(images) - keras_model.logits(images)).max() < 1e-4
    maps = GradCAM(graphs).input_maps(images), GradCAM(keras_model).input_maps(images)
    assert np.abs(maps[0] - maps[1]).max() <= MAX_GRADCAM_DIFF
    assert len(recorded) == 8


def test_add_graphs_copies_a_package_untouched_and_adds_checked_graphs(model_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in (model_dir / "tiny-cnn").iterdir()}
    assert brainmri_train(["add-graphs", str(model_dir / "tiny-cnn"), "--out", str(tmp_path / "out")]) == 0
    assert {p.name: p.read_bytes() for p in (model_dir / "tiny-cnn").iterdir()} == before  # the source as it was
    new = tmp_path / "out" / "tiny-cnn"
    manifest = json.loads((new / "manifest.json").read_text())
    assert {"model.onnx", "gradcam.onnx"} <= set(manifest["files"])
    assert all((new / name).read_bytes() == data for name, data in before.items() if name != "manifest.json")
    entry = find_model(discover([tmp_path / "out"]), "tiny-cnn")
    assert entry.ok and LoadedModel.load(entry).runtime == "onnx"


def test_resolve_is_the_one_rule_for_which_runtime_runs_a_package(model_dir):
    plain = find_model(discover([model_dir]), "tiny-cnn").manifest
    bundled = find_model(discover([]), "brainmri-resnet50").manifest
    assert runtime.resolve(bundled, asked="auto") == "onnx" and runtime.resolve(plain, asked="auto") == "keras"
    assert runtime.resolve(bundled, asked="keras") == "keras"
    with pytest.raises(ModelPackageError, match="has no ONNX graphs"):
        runtime.resolve(plain, asked="onnx")


def test_the_self_test_fails_when_the_graphs_compute_other_probabilities_than_at_export(tmp_path, capsys):
    import shutil

    from brainmri_desktop.ui.app import main as desktop

    copy = tmp_path / "models" / "brainmri-cnn-small"
    shutil.copytree(find_model(discover([]), "brainmri-cnn-small").path, copy)
    assert desktop(["--self-test", "--models-dir", str(copy)]) == 0
    assert "against the export's probabilities: within" in capsys.readouterr().out
    manifest = json.loads((copy / "manifest.json").read_text())  # not among the hashed files
    manifest["graph_check"]["reference_probabilities"][3] += 0.01
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert desktop(["--self-test", "--models-dir", str(copy)]) == 1
    assert "probabilities differ from those recorded at export" in capsys.readouterr().out
