"""A cell-scored model through the whole trainer: train, export (after Grad-CAM was measured on it), load, predict."""

from __future__ import annotations

import numpy as np

from brainmri_desktop.cli import main as brainmri
from brainmri_desktop.core.inference import LoadedModel
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover
from trainer.architectures import CELL_EVIDENCE
from trainer.cli import main as brainmri_train

from .synthetic import write_labelled_folder


def test_a_cell_scored_run_exports_and_predicts_with_its_map(tmp_path):
    data = write_labelled_folder(tmp_path / "data" / "synthetic", n_per_class=16, size=48)
    run, models = tmp_path / "run", tmp_path / "models"
    assert brainmri_train(["train", "--data", str(data), "--arch", "cnn", "--img-size", "32", "--batch-size", "8",
                           "--augment", "moderate", "--cell-score", "--epochs", "2", "--out", str(run)]) == 0
    # export measures Grad-CAM on the model before it writes it (Keras could not serialise it after that once)
    assert brainmri_train(["export", str(run), "--to", str(models), "--id", "cells", "--force"]) == 0
    entry = find_model(discover([models]), "cells")
    assert entry.manifest.gradcam_layer == CELL_EVIDENCE
    model = LoadedModel.load(entry, "keras")  # the reference Keras model the ONNX graphs were checked against
    assert model.keras_model.get_layer("head_cells") is not None
    image = next((data / "yes").iterdir())
    out_csv = tmp_path / "out.csv"
    assert brainmri(["predict", "--models-dir", str(models), "--model", "cells", "--cam-dir", str(tmp_path / "cams"),
                     "--out", str(out_csv), str(image)]) == 0
    (saved,) = (tmp_path / "cams").glob("*.npy")
    cam = np.load(saved)
    assert cam.shape == (48, 48) and np.isfinite(cam).all() and 0 <= cam.min() and cam.max() <= 1
