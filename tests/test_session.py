"""The Qt-free session: one triage path, decisions by the operating point, scope verdicts, marks and the map cache."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from brainmri_desktop.core.errors import UnreadableFileError
from brainmri_desktop.core.inference import LoadedModel, SliceResult, TTAConfig, predict
from brainmri_desktop.core.io.slices import Slice
from brainmri_desktop.core.model_choice import find_model
from brainmri_desktop.core.packages import discover
from brainmri_desktop.core.preprocess import preprocess_slice
from brainmri_desktop.core.review import ReviewStore
from brainmri_desktop.core.scope import OUT, Evidence, Kind, ScopeVerdict, model_verdict, rule_check
from brainmri_desktop.core.session import INPUT_VIEW, SLICE_VIEW, Session, Study, Threshold, decide, triage_chunks

from .synthetic import blob_image, head_image

KINDS = ("none", "small", "large")  # slice i of _slices carries KINDS[i % 3]: tiny-cnn flags large at 0.5, small at 0.2


SCOUT = ScopeVerdict(OUT, Kind.LOCALISER, "a scout image", Evidence.HEADERS)


def _slices(n: int, blank: tuple[int, ...] = ()) -> list[Slice]:
    return [Slice(Path(f"/nowhere/s{i}.png"), np.zeros((64, 56), np.uint8) if i in blank
                  else blob_image(KINDS[i % 3], 64, 56, seed=i)) for i in range(n)]


def _of(n: int, *kinds: str, but: tuple[int, ...] = ()) -> list[int]:
    return [i for i in range(n) if KINDS[i % 3] in kinds and i not in but]


def _result(p: float, low: float | None = None, high: float | None = None) -> SliceResult:
    return SliceResult(0, p, 0.0, p if low is None else low, p if high is None else high, 1, 0.5)


def test_the_generator_covers_every_slice_in_chunks_with_the_results_of_predict(tiny):
    slices = _slices(7)
    chunks = list(triage_chunks(tiny, slices, TTAConfig(count=1), chunk=3))
    assert [(c.start, c.stop) for c in chunks] == [(0, 3), (3, 6), (6, 7)]
    got = {i: r for c in chunks for i, r in c.results.items()}
    assert sorted(got) == list(range(7)) and all(r.index == i for i, r in got.items())
    spec = tiny.manifest.preprocessing
    expected = predict(tiny, [preprocess_slice(s, spec) for s in slices], TTAConfig(count=1))
    np.testing.assert_allclose([got[i].probability for i in range(7)], [r.probability for r in expected], rtol=1e-6)
    assert all(c.cams == {} for c in chunks)  # Grad-CAM only when asked


def test_an_item_that_cannot_be_prepared_is_reported_and_the_rest_go_on(tiny):
    slices = _slices(4)
    spec = tiny.manifest.preprocessing

    def prepare(s):
        if s.path.name == "s2.png":
            raise UnreadableFileError(s.path, "truncated")
        return preprocess_slice(s, spec)

    [chunk] = triage_chunks(tiny, slices, prepare=prepare, explain=lambda i, s: i % 2 == 0)
    assert chunk.errors == {2: "truncated"} and sorted(chunk.results) == [0, 1, 3]
    assert sorted(chunk.cams) == [0] and chunk.cams[0].shape == slices[0].shape


def test_decide_is_the_one_rule_and_out_of_scope_slices_are_not_flagged_unless_asked(tiny):
    point = tiny.manifest.threshold  # 0.5
    assert decide(_result(0.7), point).flagged and not decide(_result(0.3), point).flagged
    assert decide(_result(0.45, 0.3, 0.6), point).second_look
    gated = decide(_result(0.9, 0.4, 0.95), point, SCOUT)
    assert not gated.flagged and not gated.second_look and gated.out_of_scope == "a scout image"
    included = decide(_result(0.9, 0.4, 0.95), point, SCOUT, include_out_of_scope=True)
    assert included.flagged and included.second_look and included.out_of_scope == "a scout image"


def test_a_blank_slice_gets_the_no_head_verdict_keeps_its_probability_and_is_not_flagged(tiny):
    session = Session(_slices(3, blank=(1,)))
    session.run(tiny, TTAConfig(count=1))
    assert session.verdicts[0] is None and session.verdicts[2] is None and "no head" in session.verdicts[1].reason
    assert 0 <= session.results[1].probability <= 1
    session.manifest = replace(tiny.manifest, threshold=replace(tiny.manifest.threshold, threshold=1e-6))
    assert session.flagged() == [0, 2]
    assert session.decision(1).out_of_scope == session.verdicts[1].reason
    session.include_out_of_scope = True
    assert session.flagged() == [0, 1, 2]


def test_the_threshold_choice_decides_and_nothing_else_does(tiny, model_dir):
    session = Session(_slices(6))
    session.run(tiny, TTAConfig(count=1))
    probs = {i: r.probability for i, r in session.results.items()}
    assert session.point.threshold == pytest.approx(0.5)
    assert session.flagged() == [i for i, p in sorted(probs.items()) if p >= 0.5] == _of(6, "large")
    session.threshold = Threshold.HIGH_SENSITIVITY
    assert session.point.threshold == pytest.approx(0.2) and session.point.method_in_words == "sensitivity \u2265 0.95"
    # the small discs lie between the two points: only the high-sensitivity one flags them
    assert session.flagged() == [i for i, p in sorted(probs.items()) if p >= 0.2] == _of(6, "small", "large")
    session.threshold = Threshold.DEFAULT
    assert session.flagged() == _of(6, "large")  # nothing ran again: the same results, decided anew
    spot = LoadedModel.load(find_model(discover([model_dir]), "spot"))  # has no high-sensitivity point
    assert Threshold.HIGH_SENSITIVITY.point(spot.manifest) == spot.manifest.threshold
    assert Threshold.DEFAULT.point(tiny.manifest).method_in_words == "Youden's J"


def test_a_custom_scope_check_plugs_in_beside_the_rule_check(tiny):
    def odd_is_a_localiser(item, prepared):
        return SCOUT if item.path.stem.endswith(("1", "3")) else None

    session = Session(_slices(4, blank=(2,)), scope=(rule_check, odd_is_a_localiser))
    session.run(tiny, TTAConfig(count=1))
    assert session.verdicts == {0: None, 1: SCOUT, 2: rule_check(None, session.inputs[2]), 3: SCOUT}
    assert session.verdicts[2].kind is Kind.BLANK


def test_an_out_of_scope_slice_is_flagged_at_neither_point_unless_the_reader_includes_it(tiny):
    def scout(item, prepared):
        return SCOUT if item.path.stem in ("s4", "s5") else None  # a small disc and a large one

    session = Session(_slices(6), scope=(rule_check, scout))
    session.run(tiny, TTAConfig(count=1))
    assert session.flagged() == _of(6, "large", but=(5,))
    session.threshold = Threshold.HIGH_SENSITIVITY
    assert session.flagged() == _of(6, "small", "large", but=(4, 5))
    assert session.decision(4).out_of_scope == session.decision(5).out_of_scope == "a scout image"
    session.include_out_of_scope = True
    assert session.flagged() == _of(6, "small", "large")
    session.threshold = Threshold.DEFAULT
    assert session.flagged() == _of(6, "large")


def test_step_flagged_wraps_and_a_new_model_keeps_the_marks(tiny, tmp_path):
    slices = _slices(6)
    session = Session(slices, ReviewStore(slices, tmp_path))
    session.run(tiny, TTAConfig(count=1))
    session.manifest = replace(tiny.manifest, threshold=replace(tiny.manifest.threshold, threshold=1e-6))
    assert session.flagged() == list(range(6))
    session.current = 5
    assert session.step_flagged(1) == 0 and session.step_flagged(-1) == 4
    session.mark(3, "disagree", "motion")
    session.start(tiny.manifest)
    assert session.results == {} and session.cams == {} and session.step_flagged(1) is None
    assert session.marks[3].note == "motion"
    assert ReviewStore(slices, tmp_path).marks[3].verdict == "disagree"  # saved, not only kept in memory
    unsaved = Session(slices)
    unsaved.mark(1, "agree")
    assert unsaved.marks[1].verdict == "agree"
    unsaved.mark(1, None)
    assert unsaved.marks == {}


def test_grad_cam_maps_are_computed_once_per_view_and_cached(tiny):
    from brainmri_desktop.core.gradcam import GradCAM

    session = Session(_slices(3))
    session.run(tiny, TTAConfig(count=1))
    cam = GradCAM(tiny)
    assert session.missing_cams([0, 1, 2]) == [0, 1, 2]
    for part in session.cam_chunks(cam, [0, 2], SLICE_VIEW, chunk=1):
        assert len(part) == 1
        session.accept_cams(part)
    assert session.missing_cams([0, 1, 2]) == [1]
    assert session.cam(0).shape == session.slices[0].shape
    assert session.missing_cams([0], INPUT_VIEW) == [0]
    for part in session.cam_chunks(cam, [0], INPUT_VIEW):
        session.accept_cams(part)
    assert session.cam(0, INPUT_VIEW).shape == session.inputs[0].image.shape
    assert Session(_slices(1)).missing_cams([0]) == []  # nothing to explain before a result


def test_a_study_keeps_one_session_per_series():
    study = Study()
    a = study.add("1.2.3", Session(_slices(2)))
    b = study.add("1.2.4", Session(_slices(3)))
    assert study.session is a
    a.current = 1
    assert study.activate("1.2.4") is b and b.current == 0 and study.session is b
    assert study.sessions["1.2.3"].current == 1


def test_the_session_imports_no_qt():
    code = ("import sys, brainmri_desktop.core.session, brainmri_desktop.core.report; "
            "sys.exit(any(m.startswith(('PySide6', 'PyQt', 'superqt')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def _noise(n: int) -> list[Slice]:
    rng = np.random.default_rng(0)
    return [Slice(Path(f"/nowhere/noise{k}.png"), rng.integers(0, 256, (48, 48)).astype(np.uint8)) for k in range(n)]


def test_the_models_own_score_puts_unlike_images_out_of_scope_from_the_identity_pass(tmp_path):
    """A package with a scope fit: every result carries the distance from the same forward pass as its logit (the
    logits equal a plain logit model's), heads stay in, noise images are out with the model's reason and are not
    flagged."""
    from brainmri_desktop.core.ood import run_scoring, scoring_model

    from .test_scope import write_fitted_package

    entry = discover([write_fitted_package(tmp_path / "fitted")])[0]
    model = LoadedModel.load(entry)
    assert model.ood is not None
    heads = [Slice(Path(f"/nowhere/h{i}.png"), head_image(48, 48, seed=100 + i)) for i in range(8)]
    session = Session(heads + _noise(8))
    session.run(model, TTAConfig(count=1))
    scores = np.array([session.results[i].ood_score for i in range(16)])
    images = np.stack([session.inputs[i].image for i in range(16)])
    # the session ran the package's ONNX graphs; the Keras model scores the same features
    keras_model = LoadedModel.load(entry, "keras").keras_model
    logits, feats = run_scoring(scoring_model(keras_model, model.ood), images, "unit", model.ood.grid)
    np.testing.assert_allclose(scores, model.ood.score(feats), rtol=1e-4)
    np.testing.assert_allclose(model.logits(images), logits, rtol=1e-4, atol=1e-5)
    plain = LoadedModel(entry, entry.manifest, keras_model)  # the same network without its scope fit
    without = predict(plain, [session.inputs[i] for i in range(16)], TTAConfig(count=1))
    np.testing.assert_allclose([r.probability for r in without], [session.results[i].probability for i in range(16)],
                               rtol=1e-5)
    assert all(r.ood_score is None for r in without)
    out = sorted(i for i, v in session.verdicts.items() if v is not None)
    # no rule spoke: the model's score alone judged them
    assert all(session.verdicts[i].evidence is Evidence.MODEL for i in out)
    assert sum(i < 8 for i in out) <= 1 and sum(i >= 8 for i in out) >= 7
    assert all("unlike the images this model was trained on" in session.verdicts[i].reason for i in out)
    session.manifest = replace(model.manifest, threshold=replace(model.manifest.threshold, threshold=1.0 - 1e-9))
    assert not set(session.flagged()) & set(out)  # below the threshold they are out of scope, with that reason
    assert all(session.decision(i).out_of_scope == session.verdicts[i].reason for i in out)
    session.manifest = replace(model.manifest, threshold=replace(model.manifest.threshold, threshold=1e-6))
    # at or over the threshold the score never hides them: flagged, with the reason as a warning
    assert session.flagged() == list(range(16))
    assert all(session.decision(i).warning.startswith("unusual image: ") for i in out)


def test_an_unusual_look_never_hides_a_confident_finding(tiny):
    """The feature distance reads what the model detects with: over the threshold it warns, it does not hide."""
    point = tiny.manifest.threshold  # 0.5
    far = model_verdict(90.0, SimpleNamespace(threshold=40.0))
    assert far.reason == "unlike the images this model was trained on (its feature distance 90.0 exceeds 40.0)"
    confident = decide(_result(0.99), point, far)
    assert confident.flagged and confident.out_of_scope is None and confident.warning == f"unusual image: {far.reason}"
    low = decide(_result(0.2, 0.1, 0.3), point, far)
    assert not low.flagged and low.out_of_scope == far.reason and low.warning is None
    # a rule's verdict (headers, a blank image) still puts a slice out, however confident
    ruled = decide(_result(0.99), point, SCOUT)
    assert not ruled.flagged and ruled.out_of_scope == "a scout image" and ruled.warning is None


def test_the_session_warns_rather_than_hides_on_a_feature_distance_verdict(tiny):
    session = Session(_slices(2))
    session.start(tiny.manifest)
    session.results = {0: _result(0.99), 1: _result(0.1)}
    far = ScopeVerdict(OUT, Kind.UNLIKE_TRAINING, "far", Evidence.MODEL)
    session.verdicts = {0: far, 1: far}
    assert session.flagged() == [0] and session.decision(0).warning == "unusual image: far"
    assert session.decision(1).out_of_scope == "far"


def test_a_mark_remembers_the_model_whose_result_it_judged(tiny, tmp_path):
    from brainmri_desktop.core.review import ReviewStore
    from brainmri_desktop.ui.result_panel import mark_html

    slices = _slices(2)
    session = Session(slices, ReviewStore(slices, tmp_path))
    session.start(tiny.manifest)
    session.mark(0, "agree", reader="Dr A")
    assert session.marks[0].model == tiny.manifest.id
    assert ReviewStore(slices, tmp_path).marks[0].model == tiny.manifest.id  # kept on disk too
    assert "made on the result of model" not in mark_html(session.marks[0], tiny.manifest.id)
    shown = mark_html(session.marks[0], "another-model")
    assert f"made on the result of model {tiny.manifest.id}" in shown and "not the one shown" in shown
