from __future__ import annotations

import numpy as np
import pytest

from brainmri_desktop.core.errors import CancelledError
from brainmri_desktop.core.gradcam import GradCAM
from brainmri_desktop.core.inference import LoadedModel, TTAConfig, predict, sigmoid
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover
from brainmri_desktop.core.preprocess import preprocess_values

from .synthetic import head_image


@pytest.fixture(scope="module")
def inputs(tiny):
    spec = tiny.manifest.preprocessing
    return [preprocess_values(head_image(80, 60 + 4 * i, tumour=(40, 30, 3 + i % 4), seed=i), None, spec)
            for i in range(10)]


def test_identity_tta_equals_plain_prediction(tiny, inputs):
    results = predict(tiny, inputs, TTAConfig(count=1))
    raw = tiny.logits(np.stack([p.image for p in inputs]))
    expected = sigmoid(raw / tiny.manifest.temperature + tiny.manifest.logit_bias)
    np.testing.assert_allclose([r.probability for r in results], expected, rtol=1e-5)
    assert all(r.augmentations == 1 and r.tta_std == 0 for r in results)
    assert all(not hasattr(r, "flagged") for r in results)  # deciding is the session's (core.session.decide)


def test_full_tta_averages_logits_of_every_view(tiny, inputs):
    results = predict(tiny, inputs, TTAConfig(count=4, adaptive=False))
    assert all(r.augmentations == 4 for r in results)
    assert all(r.p_low <= r.probability <= r.p_high for r in results)


def test_adaptive_tta_spends_views_only_near_the_threshold(tiny, inputs):
    wide = predict(tiny, inputs, TTAConfig(count=4, adaptive=True, margin=100.0))
    narrow = predict(tiny, inputs, TTAConfig(count=4, adaptive=True, margin=1e-9))
    assert all(r.augmentations == 4 for r in wide)
    assert all(r.augmentations == 1 for r in narrow)


def test_results_stream_and_cancel_stops(tiny, inputs):
    seen = []
    predict(tiny, inputs, TTAConfig(count=1), batch_size=3, on_result=seen.append)
    assert sorted(r.index for r in seen) == list(range(len(inputs)))
    with pytest.raises(CancelledError):
        predict(tiny, inputs, TTAConfig(count=1), cancel=lambda: True)


def test_gradcam_peaks_at_the_region_that_drives_the_logit(model_dir):
    """Off-centre head on a wide, non-square slice: the map must peak at the bright spot in slice coordinates."""
    spot = LoadedModel.load(find_model(discover([model_dir]), "spot"))
    img = head_image(300, 420, centre=(180, 150), axes=(90, 70), tumour=(205, 175, 14), seed=3, dtype=np.uint16)
    prepped = preprocess_values(img, None, spot.manifest.preprocessing)
    [cam] = GradCAM(spot).slice_maps([prepped])
    assert cam.shape == img.shape and cam.dtype == np.float32
    assert cam.min() >= 0 and cam.max() == pytest.approx(1.0, abs=1e-3)
    y, x = np.unravel_index(np.argmax(cam), cam.shape)
    assert (y - 205) ** 2 + (x - 175) ** 2 <= 16 ** 2
    yy, xx = np.mgrid[0:300, 0:420]
    inside = (yy - 205) ** 2 + (xx - 175) ** 2 <= 14 ** 2
    assert cam[inside].mean() > 10 * cam[~inside].mean()


def test_default_model_is_the_best_validated_one(model_dir):
    from dataclasses import replace

    from brainmri_desktop.core.packages import ModelEntry

    entries = [e for e in discover([model_dir]) if e.ok]
    better = replace(entries[1].manifest, metrics={"validation": {"auc": {"value": 0.99}}})
    worse = replace(entries[0].manifest, metrics={"validation": {"auc": {"value": 0.6}}})
    picked = find_model([ModelEntry(entries[0].path, "bundled", worse), ModelEntry(entries[1].path, "bundled", better)], None)
    assert picked.manifest is better
    # a lower AUC wins when only that model's Grad-CAM was measured inside the tumours of every outlined source
    cams = {"lgg": {"n": 100, "pointing_game": 0.6}, "br35h": {"n": 50, "pointing_game": 0.7}}
    pointing = replace(worse, metrics={**worse.metrics, "gradcam": cams})
    half = replace(better, metrics={**better.metrics, "gradcam": {**cams, "br35h": {"n": 50, "pointing_game": 0.2}}})
    picked = find_model([ModelEntry(entries[0].path, "bundled", pointing), ModelEntry(entries[1].path, "bundled", half)],
                        None)
    assert picked.manifest is pointing


def test_tta_beyond_the_views_that_exist_is_refused_with_the_one_limit():
    from brainmri_desktop.core.augment import MAX_TTA

    TTAConfig(count=MAX_TTA)
    for count in (0, MAX_TTA + 1):
        with pytest.raises(ValueError, match=f"between 1 and {MAX_TTA}"):
            TTAConfig(count=count)
