"""On the real development data (`../shared/data`, built by ../shared/tools/get-data); skipped when it is absent."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from brainmri_desktop.core.inference import LoadedModel, TTAConfig, predict
from brainmri_desktop.core.io.images import read_image
from brainmri_desktop.core.packages import discover
from brainmri_desktop.core.preprocess import preprocess_slice
from trainer.data import load_source, summary

from .conftest import DATA, requires_data


@requires_data("lgg-flair")
@requires_data("kaggle-4class")
@requires_data("br35h")
def test_each_layout_is_read_with_its_labels():
    lgg = summary(load_source(DATA / "lgg-flair"))["by_source"]["lgg-flair"]
    assert lgg["images"] == 2876 and lgg["patients"] == 75 and 0 < lgg["tumour"] < lgg["images"]
    four = summary(load_source(DATA / "kaggle-4class"))["by_source"]["kaggle-4class"]
    assert four["images"] == 7020 and four["tumour"] > 2 * four["no_tumour"] > 0  # three tumour classes collapsed
    br35h = load_source(DATA / "br35h")
    assert len(br35h) == 1300 and all(s.label == 1 for s in br35h)
    assert sum(s.outline is not None for s in br35h) > 500  # VIA polygons for y0-y700


@requires_data("lgg-flair")
def test_bundled_models_rank_real_lgg_slices():
    """A smoke test on real FLAIR slices (some of them were training data: this checks the path, not the model)."""
    samples = load_source(DATA / "lgg-flair")
    rng = np.random.default_rng(0)
    picked = [samples[i] for i in rng.choice(len(samples), 80, replace=False)]
    labels = np.array([s.label for s in picked])
    assert 0 < labels.sum() < len(labels)
    bundled = [e for e in discover() if e.ok and e.source == "bundled"]
    assert bundled
    for entry in bundled:
        model = LoadedModel.load(entry)
        inputs = [preprocess_slice(read_image(s.path), model.manifest.preprocessing) for s in picked]
        probs = np.array([r.probability for r in predict(model, inputs, TTAConfig(count=1))])
        assert roc_auc_score(labels, probs) > 0.75, entry.manifest.id
