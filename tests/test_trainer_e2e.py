"""The whole trainer on a tiny generated data set: train, calibrate, threshold, export; the registry loads it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from brainmri_desktop.cli import main as brainmri
from brainmri_desktop.core.inference import LoadedModel
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover
from trainer.cli import main as brainmri_train

from .synthetic import write_labelled_folder, write_patient_folders


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_labelled_folder(tmp_path_factory.mktemp("data") / "synthetic", n_per_class=20, size=48)


# Runs this small are too weak for export's bar (validation AUC 0.7, a calibration off its bounds): they export with
# --force, the pipeline being what is tested.
def _train(tiny_data, out, *extra):
    return brainmri_train(["train", "--data", str(tiny_data), "--arch", "cnn", "--img-size", "32",
                           "--batch-size", "8", "--augment", "moderate", "--out", str(out), *extra])


def test_train_export_and_predict(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_data, run, "--epochs", "2") == 0
    results = json.loads((run / "results.json").read_text())
    assert 0 < results["temperature"] < 100
    assert 0 < results["threshold"]["threshold"] < 1
    assert results["high_sensitivity"]["sensitivity"] >= 0.95  # always reachable on validation: flag everything
    assert (run / "plots" / "training_curves.png").exists()
    models = tmp_path / "models"
    # Two epochs on 40 images calibrate no better than this: export refuses the run until told
    assert brainmri_train(["export", str(run), "--to", str(models), "--id", "synthetic-cnn"]) == 2
    assert "--force" in capsys.readouterr().err
    assert brainmri_train(["export", str(run), "--to", str(models), "--id", "synthetic-cnn", "--force"]) == 0
    entry = find_model(discover([models]), "synthetic-cnn")
    assert entry.manifest.temperature == pytest.approx(results["temperature"])
    assert LoadedModel.load(entry, "keras").keras_model is not None
    assert LoadedModel.load(entry).runtime == "onnx"  # export wrote the graphs the application runs
    out_csv = tmp_path / "out.csv"
    image = next((tiny_data / "yes").iterdir())
    assert brainmri(["predict", "--models-dir", str(models), "--model", "synthetic-cnn", "--cam-dir",
                     str(tmp_path / "cams"), "--out", str(out_csv), str(image)]) == 0
    row = next(csv.DictReader(out_csv.open()))
    assert row["model_id"] == "synthetic-cnn" and 0 <= float(row["probability"]) <= 1
    cam = np.load(row["cam_path"])
    assert cam.shape == (48, 48) and cam.dtype == np.float32


def test_resume_continues_from_the_checkpoint(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert _train(tiny_data, run, "--epochs", "1") == 0
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    first = state["epoch_seconds"]
    assert _train(tiny_data, run, "--epochs", "2", "--resume") == 0
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    # the time reported covers the epochs of both sessions
    results = json.loads((run / "results.json").read_text())
    assert results["epoch_seconds"] == pytest.approx(state["epoch_seconds"], abs=0.1) and state["epoch_seconds"] > first


def test_missing_class_stops_with_a_clear_message(tmp_path, capsys):
    data = write_labelled_folder(tmp_path / "d", n_per_class=3, size=32)
    for f in (data / "no").iterdir():
        f.unlink()
    (data / "no").rmdir()
    assert _train(data, tmp_path / "run", "--epochs", "1") == 2
    assert "no tumour" in capsys.readouterr().err


def test_eda_cv_evaluate_and_ablate_run_end_to_end(tiny_data, tmp_path):
    assert brainmri_train(["eda", "--data", str(tiny_data), "--out", str(tmp_path / "eda")]) == 0
    assert json.loads((tmp_path / "eda" / "eda.json").read_text())["summary"]["images"] == 40
    assert brainmri_train(["cv", "--data", str(tiny_data), "--arch", "cnn", "--img-size", "32", "--epochs", "1",
                           "--folds", "3", "--out", str(tmp_path / "cv")]) == 0
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert len(cv["folds"]) == 3 and cv["summary"]["auc"]["mean"] is not None
    oof = np.load(tmp_path / "cv" / "oof_predictions.npz")
    assert np.isfinite(oof["probability"]).all()
    config = tmp_path / "ablate.toml"
    config.write_text(f'arch = "cnn"\nimg_size = 32\nepochs = 1\nbootstrap = 20\ntta_eval = 2\n'
                      f'[[data]]\npath = "{tiny_data}"\n[[ablations]]\nname = "focal"\nloss = "focal"\n')
    assert brainmri_train(["ablate", "--config", str(config), "--out", str(tmp_path / "ab")]) == 0
    table = (tmp_path / "ab" / "ablation.md").read_text()
    assert "| base |" in table and "| focal | loss=focal |" in table
    run = tmp_path / "ab" / "base"
    models = tmp_path / "models"
    brainmri_train(["export", str(run), "--to", str(models), "--id", "ab-base", "--force"])
    assert brainmri_train(["evaluate", "--model", str(models / "ab-base"), "--data", str(tiny_data),
                           "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert ev["overall"]["n"] == 40
    assert (tmp_path / "ev" / "gradcam_tp_fp_fn.png").exists()


def test_split_does_not_depend_on_the_input_size(tiny_data, tmp_path):
    """Duplicate groups come from the stored images, so runs at different sizes share one split (no leakage
    between a model's training and another run's evaluation)."""
    from trainer.config import DataRoot, TrainConfig
    from trainer.train import prepare

    base = TrainConfig(data=(DataRoot(path=str(tiny_data)),), img_size=32)
    a = prepare(base, tmp_path / "cache")
    b = prepare(base.override(img_size=48), tmp_path / "cache")
    assert a.split == b.split and a.grouping.groups == b.grouping.groups


def test_leave_one_source_out_run_goes_into_the_model_card(tiny_data, tmp_path, capsys):
    other = write_labelled_folder(tmp_path / "other", n_per_class=12, size=48, seed=7)
    both = ["--data", str(other)]
    assert _train(tiny_data, tmp_path / "all", "--epochs", "1", *both) == 0
    assert _train(tiny_data, tmp_path / "without", "--epochs", "1", *both, "--exclude-source", "other") == 0
    held_out = json.loads((tmp_path / "without" / "results.json").read_text())
    split = json.loads((tmp_path / "without" / "split.json").read_text())
    own = sum("/other/" not in path for path in split["val"])
    assert 0 < own < len(split["val"])
    assert f"early stopping watches {own} validation images" in capsys.readouterr().out  # never the left-out source
    assert held_out["excluded_sources"] == ["other"] and "other" in held_out["validation_by_source"]
    assert brainmri_train(["export", str(tmp_path / "all"), "--to", str(tmp_path / "models"), "--id", "two-sources",
                           "--force", "--leave-out", str(tmp_path / "without")]) == 0
    card = (tmp_path / "models" / "two-sources" / "MODEL_CARD.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| other | `without` |"))
    auc = held_out["validation_by_source"]["other"]["auc"]["value"]
    assert (f"{auc:.3f}" if auc is not None else "| - |") in row
    assert row.endswith("| - / - |")  # these images know no patients, so there are no mid-brain figures
    results = json.loads((tmp_path / "all" / "results.json").read_text())
    manifest = json.loads((tmp_path / "models" / "two-sources" / "manifest.json").read_text())
    assert manifest["logit_bias"] == pytest.approx(results["logit_bias"])
    assert "with temperature and bias" in card and "--leave-out without" in card


def test_lesion_guidance_trains_on_masks_and_exports_the_plain_classifier(tmp_path):
    """Masks reach the cache on the model grid; the guided run trains both outputs; the package holds the classifier."""
    from trainer.config import DataRoot, TrainConfig
    from trainer.train import prepare

    data = write_patient_folders(tmp_path / "lgg", patients=6, slices=8, size=48)
    prepared = prepare(TrainConfig(data=(DataRoot(path=str(data)),), img_size=32), tmp_path / "cache")
    tumour = prepared.labels == 1
    assert prepared.cache.has_mask.all()
    assert (prepared.cache.masks[tumour].reshape(tumour.sum(), -1).max(1) > 128).all()
    assert prepared.cache.masks[~tumour].max() == 0
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "2", "--lesion-weight", "1.0") == 0
    history = json.loads((run / "checkpoints" / "state.json").read_text())["history"]
    assert all(np.isfinite(h["lesion_loss"]) and "val_prob_auc" in h for h in history)
    assert brainmri_train(["export", str(run), "--to", str(tmp_path / "models"), "--id", "guided", "--force"]) == 0
    model = LoadedModel.load(find_model(discover([tmp_path / "models"]), "guided"), "keras").keras_model
    assert [layer.name for layer in model.layers if layer.name == "lesion"] == []
    assert len(model.outputs) == 1
    card = (tmp_path / "models" / "guided" / "MODEL_CARD.md").read_text()
    assert "Mid-brain slices of the patients above" in card and "| P0" not in card


def test_lesion_evidence_is_part_of_the_exported_classifier(tmp_path):
    """With --lesion-evidence the tumour map feeds the logit, so the package keeps it and loads in safe mode."""
    data = write_patient_folders(tmp_path / "lgg", patients=6, slices=8, size=48)
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1", "--lesion-weight", "1.0", "--lesion-evidence") == 0
    assert json.loads((run / "config.json").read_text())["lesion_evidence"] is True
    assert brainmri_train(["export", str(run), "--to", str(tmp_path / "models"), "--id", "evidence", "--force"]) == 0
    loaded = LoadedModel.load(find_model(discover([tmp_path / "models"]), "evidence"), "keras")
    names = [layer.name for layer in loaded.keras_model.layers]
    assert {"lesion", "lesion_peak", "evidence"} <= set(names)
    image = np.zeros((1, 32, 32), np.float32)
    assert np.isfinite(loaded.logits(image)).all()
    card = (tmp_path / "models" / "evidence" / "MODEL_CARD.md").read_text()
    assert "lesion loss (weight 1)" in card


def test_mixed_precision_trains_and_exports_a_float32_classifier(tmp_path):
    """bfloat16 compute while training (lesion head included); what is saved and exported computes in float32."""
    import keras

    data = write_patient_folders(tmp_path / "lgg", patients=4, slices=6, size=48)
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "1", "--lesion-weight", "1.0", "--precision", "mixed_bfloat16") == 0
    results = json.loads((run / "results.json").read_text())
    assert results["sessions"][0]["precision"] == "mixed_bfloat16" and np.isfinite(results["temperature"])
    saved = keras.models.load_model(run / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert brainmri_train(["export", str(run), "--to", str(tmp_path / "models"), "--id", "bf16", "--force"]) == 0
    loaded = LoadedModel.load(find_model(discover([tmp_path / "models"]), "bf16"), "keras")
    assert {layer.dtype_policy.name for layer in loaded.keras_model.layers} == {"float32"}
    assert "mixed_bfloat16" in (tmp_path / "models" / "bf16" / "MODEL_CARD.md").read_text()


def test_backbone_weights_that_cannot_be_read_end_in_one_line(tiny_data, tmp_path, capsys):
    assert _train(tiny_data, tmp_path / "run", "--arch", "resnet50", "--backbone-weights",
                  str(tmp_path / "missing.h5")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("brainmri-train: backbone weights") and "missing.h5" in err
    assert "\n" not in err and "Traceback" not in err
