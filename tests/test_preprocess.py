from __future__ import annotations

import cv2
import numpy as np
import pytest

from brainmri_desktop.core.io.images import read_image
from brainmri_desktop.core.preprocess import PreprocessSpec, preprocess_slice, preprocess_values, to_model_input
from trainer.data import Sample
from trainer.dataset import _work, uint8_batch

from .synthetic import head_image


def test_what_training_feeds_is_what_inference_feeds(tmp_path):
    """Training reads its images from the uint8 cache that `_work` fills, batched by `uint8_batch` and normalised by
    the training graph's own input layer; the application preprocesses the slice itself. The network must see the
    same input both ways, up to the uint8 rounding of the cache."""
    import keras

    from trainer.train_graph import uint8_trainee

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), head_image(120, 90, tumour=(60, 40, 6)))
    spec = PreprocessSpec(input_size=48, model_normalisation="resnet50")
    inference = preprocess_slice(read_image(path), spec)
    cached, head, _hash, _mask, reason = _work((Sample(path, 1, "x"), spec.to_dict()))
    assert reason == "" and cached.dtype == np.uint8 and head == pytest.approx(inference.head_fraction)
    image = keras.Input((None, None, 3))
    sees = uint8_trainee(keras.Model(image, image), spec.model_normalisation)  # the network's input, as trained
    trained_on = np.asarray(sees(uint8_batch(cached[None], spec.input_size)))[0]
    served = to_model_input(inference.image[None], spec.model_normalisation)[0]
    assert trained_on.shape == served.shape == (48, 48, 3)
    assert np.abs(trained_on - served).max() <= 0.5 + 1e-3  # half a uint8 step, on resnet50's 0-255 scale
    assert 0 < np.abs(trained_on - served).mean() < 0.3  # rounded, not another image


def test_crop_keeps_aspect_ratio_with_padding():
    img = np.zeros((200, 300), np.float32)
    img[50:150, 60:260] = np.random.default_rng(0).uniform(50, 150, (100, 200))  # a textured 100 x 200 rectangle
    p = preprocess_values(img, None, PreprocessSpec(input_size=64, crop_margin=0.0, blank_outside_head=False))
    rows = np.nonzero(p.image.max(axis=1) > 0.05)[0]
    cols = np.nonzero(p.image.max(axis=0) > 0.05)[0]
    ratio = (np.ptp(cols) + 1) / (np.ptp(rows) + 1)
    assert ratio == pytest.approx(2.0, rel=0.1)


def test_geometry_maps_back_to_the_slice():
    img = head_image(150, 260, centre=(90, 70), axes=(40, 35), tumour=(100, 80, 8)).astype(np.float32)
    p = preprocess_values(img, None, PreprocessSpec(input_size=64))
    back = p.geometry.to_source(p.image)
    assert back.shape == img.shape
    y0, y1, x0, x1 = p.geometry.box
    assert y0 > 20 and x1 < 150  # cropped to the off-centre head, not the whole frame
    peak = np.unravel_index(np.argmax(cv2.GaussianBlur(back, (9, 9), 0)), back.shape)
    assert abs(peak[0] - 100) <= 6 and abs(peak[1] - 80) <= 6


def test_intensity_normalisation_ignores_export_scale():
    img = head_image(96, 96, tumour=(40, 40, 5)).astype(np.float32)
    a = preprocess_values(img, None, PreprocessSpec(input_size=32)).image
    b = preprocess_values(img * 37.0 + 500, None, PreprocessSpec(input_size=32)).image
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_window_is_applied_before_normalising():
    img = head_image(64, 64).astype(np.float32)
    img[30:34, 30:34] = 10000  # far outside the window
    with_window = preprocess_values(img, (100, 200), PreprocessSpec(input_size=32)).image
    assert with_window.max() <= 1.0 and with_window.mean() > 0.2


def test_resnet_normalisation_matches_keras():
    import keras

    unit = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    ours = to_model_input(unit, "resnet50")
    theirs = keras.applications.resnet50.preprocess_input(np.repeat(unit[..., None], 3, -1) * 255.0)
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-3)


def test_blank_slice_does_not_fail():
    p = preprocess_values(np.zeros((50, 70)), None, PreprocessSpec(input_size=32))
    assert p.image.shape == (32, 32) and p.head_fraction == 0.0 and not p.image.any()


def test_spec_round_trips_through_dict():
    spec = PreprocessSpec(input_size=96, clahe=True, model_normalisation="resnet50")
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert "clahe(clip=2.0, grid=8)" in spec.to_dict()["steps"]


def test_strip_rim_blanks_the_bright_scalp_and_keeps_the_brain():
    size = 200
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.where(r < 80, np.random.default_rng(0).uniform(80, 120, (size, size)), 0.0)
    img[(r >= 72) & (r < 80)] = 1000.0  # a bright scalp ring, 8 px of an 80 px radius
    img[95:105, 95:105] = 300.0  # a lesion in the middle
    # no crop, so that the model input is on the slice's own grid
    plain = preprocess_values(img, None, PreprocessSpec(input_size=size, head_crop=False))
    stripped = preprocess_values(img, None, PreprocessSpec(input_size=size, head_crop=False, strip_rim=0.06))
    ring = (r >= 74) & (r < 78)
    assert plain.image[ring].mean() > 0.9  # the scalp is the brightest thing the model sees
    assert stripped.image[ring].max() == 0.0
    assert plain.image[60:70, 100].max() < 0.05  # and it pushes the brain down to black
    assert stripped.image[98:102, 98:102].min() == 1.0 and 0.3 < stripped.image[60:70, 100].mean() < 0.7
    cropped = [preprocess_values(img, None, PreprocessSpec(input_size=64, strip_rim=k)) for k in (0.0, 0.06)]
    assert cropped[0].geometry == cropped[1].geometry  # same crop: Grad-CAM maps go back to the same place


def test_a_slice_map_reaches_the_model_grid_where_the_image_did():
    """Tumour masks go through the crop and scaling of their image: a disc lands where the disc's pixels went."""
    img = head_image(120, 90, tumour=(50, 40, 8), seed=3).astype(np.float32)
    p = preprocess_values(img, None, PreprocessSpec(input_size=64, blank_outside_head=False))
    disc = np.zeros(img.shape, np.float32)
    cv2.circle(disc, (40, 50), 8, 1.0, -1)
    on_grid = p.geometry.to_input(disc)
    assert on_grid.shape == (64, 64)
    peak = np.unravel_index(np.argmax(p.image), p.image.shape)
    assert on_grid[peak] > 0.5 and on_grid.sum() < 0.2 * on_grid.size
    back = p.geometry.to_source(on_grid)
    assert ((back > 0.5) == (disc > 0.5)).mean() > 0.98


def test_median_scale_keeps_normal_tissue_level_when_a_large_bright_lesion_is_present():
    """Under "percentiles" a lesion that holds the top percentile darkens the rest of the brain; "median" does not."""
    plain = head_image(128, 128, seed=5).astype(np.float32)
    lesion = head_image(128, 128, tumour=(64, 50, 12), seed=5).astype(np.float32)  # about 7% of the head
    far = np.zeros((64, 64), bool)
    far[20:44, 40:52] = True  # normal tissue well away from the lesion, on the model grid
    levels = {}
    for scale in ("percentiles", "median"):
        spec = PreprocessSpec(input_size=64, intensity_scale=scale)
        levels[scale] = [float(preprocess_values(im, None, spec).image[far].mean()) for im in (plain, lesion)]
    assert levels["percentiles"][0] - levels["percentiles"][1] > 0.2
    assert abs(levels["median"][0] - levels["median"][1]) < 0.05
    with pytest.raises(ValueError):
        PreprocessSpec(intensity_scale="mean")
