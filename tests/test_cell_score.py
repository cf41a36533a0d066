"""A score read from a map of where (issue 27): the logit is a smooth maximum of per-cell tumour logits inside the
head, so Grad-CAM of the score peaks where the per-cell map does, and nothing outside the head can raise it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from brainmri_desktop.core.cell_layers import HeadCells, MaskedLogSumExp
from brainmri_desktop.core.gradcam import GradCAM
from brainmri_desktop.core.inference import LoadedModel
from brainmri_desktop.core.manifest import Manifest, OperatingPoint
from brainmri_desktop.core.packages import discover, write_package
from brainmri_desktop.core.preprocess import PreprocessSpec, preprocess_values, to_model_input
from trainer.architectures import CELL_EVIDENCE, ArchConfig, build, gradcam_layer, lesion_loss, with_lesion_head
from trainer.config import TrainConfig, validate
from trainer.dataset import LesionTargets

SIZE = 32


def _slices(n: int, seed: int):
    """Heads (a grey disc on black) with, on half of them, a bright blob somewhere inside; and the blobs' masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    head = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 14**2
    images, masks, labels = [], [], []
    for i in range(n):
        image = np.where(head, 0.35 + 0.1 * rng.random((SIZE, SIZE)), 0.0).astype(np.float32)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        if i % 2:
            r, a = rng.uniform(0, 8), rng.uniform(0, 2 * np.pi)
            cy, cx = 15.5 + r * np.sin(a), 15.5 + r * np.cos(a)
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < 3.5**2
            image[blob], mask[blob] = 0.95, 255
        images.append(image)
        masks.append(mask)
        labels.append(i % 2)
    return np.stack(images), np.stack(masks), np.array(labels, np.float32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny cell-scored CNN trained for a few seconds as the trainer trains one: image label on the pooled score,
    lesion loss on the cells; written as a package and loaded as the application loads it."""
    import keras

    keras.utils.set_random_seed(0)
    model = build(ArchConfig(arch="cnn", cnn_widths=(8, 16, 16), cnn_dropouts=(0.0, 0.0, 0.0), head_dropout=0.0,
                             cell_score=True))
    trainee = with_lesion_head(model, gradcam_layer("cnn", cell_score=True))
    images, masks, labels = _slices(400, seed=1)
    grid = int(trainee(np.zeros((1, SIZE, SIZE, 3), np.float32))["lesion"].shape[1])
    targets = LesionTargets(masks, labels.astype(bool), grid).batch(masks, np.arange(len(masks)))
    trainee.compile(optimizer=keras.optimizers.Adam(3e-3), loss={"prob": "binary_crossentropy", "lesion": lesion_loss},
                    loss_weights={"prob": 1.0, "lesion": 3.0})
    trainee.fit(to_model_input(images, "unit"), {"prob": labels, "lesion": targets}, batch_size=32, epochs=12,
                verbose=0)
    root = tmp_path_factory.mktemp("cells")
    point = OperatingPoint(0.5, "youden_j", "synthetic", 0.9, 0.8)
    write_package(root / "cells", Manifest(
        id="cells", name="Cells", architecture="cnn", preprocessing=PreprocessSpec(input_size=SIZE),
        gradcam_layer=CELL_EVIDENCE, temperature=1.0, threshold=point, files={}), model)
    return LoadedModel.load(next(e for e in discover([root]) if e.ok and e.manifest.id == "cells"))


def test_grad_cam_of_the_score_peaks_in_the_cell_the_map_peaks_in(trained):
    import keras

    images, _masks, labels = _slices(200, seed=7)
    net = trained.keras_model
    x = to_model_input(images, "unit")
    cells, inside, prob = keras.Model(net.input, [net.get_layer("cell_logit").output, net.get_layer("head_cells").output,
                                                  net.output])(x)
    prob = np.asarray(prob).ravel()
    # it learnt the task, so the maps below are a trained model's, not noise
    assert roc_auc_score(labels, prob) > 0.95
    cells = np.where(np.asarray(inside)[..., 0] > 0, np.asarray(cells)[..., 0], -np.inf)
    cam = GradCAM(trained).cell_maps(images)
    shown = cam.reshape(len(x), -1).max(axis=1) > 0
    assert shown[labels == 1].mean() > 0.9  # a map is drawn on (nearly) every tumour slice
    same = cam.reshape(len(x), -1).argmax(1) == cells.reshape(len(x), -1).argmax(1)
    assert same[shown].mean() >= 0.99


def test_grad_cam_is_zero_outside_the_head(trained):
    images, _masks, _labels = _slices(20, seed=3)
    cam = GradCAM(trained).cell_maps(images)
    inside = np.asarray(trained.keras_model.get_layer("head_cells")(to_model_input(images, "unit")))[..., 0]
    assert (inside == 0).any() and (inside == 1).any()
    assert np.all(cam[inside == 0] == 0)


def test_a_cell_outside_the_head_has_no_say_in_the_pooled_score():
    pool = MaskedLogSumExp()
    z = np.zeros((1, 4, 4, 1), np.float32)
    z[0, 1, 1, 0] = 2.0
    inside = np.zeros((1, 4, 4, 1), np.float32)
    inside[0, 1:3, 1:3, 0] = 1.0
    loud = z.copy()
    loud[0, 0, 3, 0] = 50.0  # an outside cell shouting "tumour"
    assert float(pool([loud, inside])[0, 0]) == pytest.approx(float(pool([z, inside])[0, 0]), abs=1e-6)
    quiet = z.copy()
    quiet[0, 1, 1, 0] = 0.0
    assert float(pool([quiet, inside])[0, 0]) < float(pool([z, inside])[0, 0])  # an inside cell does have a say


def test_a_bright_mark_outside_the_head_cannot_raise_the_score(trained):
    big = np.zeros((96, 96), np.float32)
    yy, xx = np.mgrid[0:96, 0:96]
    big[(yy - 48) ** 2 + (xx - 48) ** 2 < 30**2] = 0.4
    marked = big.copy()
    marked[2:14, 70:94] = 1.0  # burnt-in text in a corner, brighter than anything in the head
    spec = trained.manifest.preprocessing
    clean_in, marked_in = (preprocess_values(v, None, spec).image for v in (big, marked))
    net = trained.keras_model
    p_clean, p_marked = (float(net(to_model_input(im[None], "unit"))[0, 0]) for im in (clean_in, marked_in))
    assert p_marked <= p_clean + 1e-6


def test_head_cells_follow_the_backbones_rounding():
    image = np.zeros((1, 36, 36, 3), np.float32)
    image[:, 8:28, 8:28] = 0.5
    same = np.asarray(HeadCells(16, padding="same")(image))
    valid = np.asarray(HeadCells(4, padding="valid")(image))
    assert same.shape == (1, 3, 3, 1) and valid.shape == (1, 9, 9, 1)
    assert valid[0, 2:7, 2:7, 0].all() and not valid[0, 0, :, 0].any()


def test_cell_score_fixes_the_grad_cam_layer():
    with pytest.raises(ValueError, match="cell_score"):
        validate(TrainConfig.from_dict({"data": ["x"], "cell_score": True, "gradcam_layer": "block2_relu"}))
    assert gradcam_layer("resnet50", cell_score=True) == CELL_EVIDENCE



def test_fine_cells_lie_on_conv3s_grid_and_begin_as_the_coarse_model_they_start_from(tmp_path):
    """ResNet50 fine cells (issue 27, second round): the map is twice as fine as conv4's, and a run that starts from
    a coarse cell model's weights starts with that model's scores (the fine branch begins at zero), so what it learns
    is measured from the shipped model, not from a new head."""
    import keras

    from trainer.architectures import load_weights_by_name

    keras.utils.set_random_seed(0)
    coarse = build(ArchConfig(arch="resnet50", cell_score=True, l2=0.0))
    fine = build(ArchConfig(arch="resnet50", cell_score=True, fine_cells=True, l2=0.0))
    coarse.save(tmp_path / "model.keras")
    copied = load_weights_by_name(fine, tmp_path)
    assert copied == sum(1 for layer in fine.layers if layer.weights) - 1  # all but the fine branch
    image = np.random.default_rng(0).normal(0, 40, (3, 64, 64, 3)).astype(np.float32)  # no blank: every cell is head
    assert fine.get_layer(CELL_EVIDENCE).output.shape[1:] == (None, None, 64)
    evidence = keras.Model(fine.input, fine.get_layer(CELL_EVIDENCE).output)(image)
    assert tuple(evidence.shape) == (3, 8, 8, 64)  # 64 px / 8, where the coarse grid is 4x4
    np.testing.assert_allclose(np.asarray(fine(image)), np.asarray(coarse(image)), rtol=1e-4, atol=1e-6)


def test_fine_cells_need_a_cell_scored_resnet50_at_a_multiple_of_16():
    for bad in ({"arch": "cnn", "cell_score": True}, {"arch": "resnet50"},
                {"arch": "resnet50", "cell_score": True, "img_size": 120}):
        with pytest.raises(ValueError, match="fine_cells"):
            validate(TrainConfig.from_dict({"data": ["x"], "fine_cells": True, **bad}))

def test_the_deletion_test_sees_that_the_maps_top_cells_carry_the_score(trained, tmp_path):
    import cv2

    from trainer.data import Sample
    from trainer.faithfulness import deletion_test

    images, _masks, labels = _slices(40, seed=11)
    samples = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = tmp_path / f"s{i}.png"
        cv2.imwrite(str(path), (image * 255).astype(np.uint8))
        samples.append(Sample(path, int(label), "synthetic"))
    result = deletion_test(trained, samples)["synthetic"]
    assert result["n"] + result["empty_maps"] == 20  # the tumour slices only
    assert result["n"] >= 15
    # filling the map's top cells removes the blob the model was trained to see; random head cells rarely hit it
    assert result["drop_top"] > 0.3 and result["drop_top"] > 3 * max(result["drop_random"], 0.01)
