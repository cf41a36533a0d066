"""The Grad-CAM / lesion layer option and starting a run from a package's weights (trainer `gradcam_layer`,
`init_from`)."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri_desktop.core.manifest import Manifest, OperatingPoint
from brainmri_desktop.core.packages import write_package
from brainmri_desktop.core.preprocess import PreprocessSpec
from trainer.architectures import ArchConfig, build_cnn, gradcam_layer, load_weights_by_name, with_lesion_head
from trainer.config import TrainConfig, validate


def _package(root, model):
    point = OperatingPoint(0.5, "youden_j", "synthetic")
    return write_package(root, Manifest(
        id=root.name, name="tiny", architecture="cnn", preprocessing=PreprocessSpec(input_size=32),
        gradcam_layer="block3_relu", temperature=1.0, threshold=point, files={}), model)


def test_the_lesion_head_sits_on_the_chosen_layer():
    x = np.zeros((1, 32, 32, 3), np.float32)
    model = build_cnn(ArchConfig(cnn_widths=(4, 8, 8)))
    assert with_lesion_head(model, gradcam_layer("cnn"))(x)["lesion"].shape[1] == 32 // 4  # block3: after two pools
    finer = build_cnn(ArchConfig(cnn_widths=(4, 8, 8)))
    assert with_lesion_head(finer, gradcam_layer("cnn", "block2_relu"))(x)["lesion"].shape[1] == 32 // 2
    assert gradcam_layer("resnet50") == "conv5_block3_out"


def test_lesion_evidence_cannot_be_moved_to_another_layer():
    cfg = TrainConfig.from_dict({"data": ["x"], "lesion_evidence": True, "gradcam_layer": "block2_relu"})
    with pytest.raises(ValueError, match="gradcam_layer"):
        validate(cfg)


def test_a_run_starts_from_a_packages_weights_by_layer_name(tmp_path):
    import keras

    keras.utils.set_random_seed(1)
    donor = build_cnn(ArchConfig(cnn_widths=(4, 8, 8)))
    path = _package(tmp_path / "donor", donor)
    keras.utils.set_random_seed(2)
    model = build_cnn(ArchConfig(cnn_widths=(4, 8, 8)))
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    assert not np.allclose(model(x, training=False), donor(x, training=False))
    assert load_weights_by_name(model, path) == len([layer for layer in donor.layers if layer.weights])
    np.testing.assert_allclose(model(x, training=False), donor(x, training=False), atol=1e-6)
    # layers whose shapes differ keep their own weights; a model with nothing in common is refused
    wider = build_cnn(ArchConfig(cnn_widths=(4, 8, 16)))
    kept = wider.get_layer("block3_conv").get_weights()[0].copy()
    assert 0 < load_weights_by_name(wider, path) < len([layer for layer in wider.layers if layer.weights])
    np.testing.assert_array_equal(wider.get_layer("block3_conv").get_weights()[0], kept)
    inputs = keras.Input((None, None, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="elsewhere")(inputs))
    with pytest.raises(ValueError, match="no layer"):
        load_weights_by_name(other, path)
