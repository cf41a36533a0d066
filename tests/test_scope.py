"""The scope guard: header rules on DICOM files written here, the blank-image verdict, and the out-of-distribution
detector's fit, score, package round trip and tamper check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from brainmri_desktop.core.errors import ModelPackageError
from brainmri_desktop.core.io.slices import Acquisition, SeriesInfo, Slice
from brainmri_desktop.core.io.study import read_file
from brainmri_desktop.core.ood import OOD_FILE, detector_from_bytes, load_ood, run_scoring, scoring_model
from brainmri_desktop.core.packages import read_package, sha256_file
from brainmri_desktop.core.preprocess import PreprocessSpec, preprocess_slice, preprocess_values
from brainmri_desktop.core.scope import (
    IN, OUT, UNDECIDED, Evidence, Kind, ScopeVerdict, assess, header_verdict, tilt_from_axial,
)

from .conftest import requires_data
from .synthetic import write_dicom_series


def _first(folder: Path, **extra) -> Slice:
    paths = write_dicom_series(folder, n=1, size=64, extra=extra)
    return read_file(paths[0])[0]


@pytest.mark.parametrize("orientation, status, words", [
    ([1, 0, 0, 0, 1, 0], IN, "axial"),
    # 20 degrees about the left-right axis: a routine AC-PC angulation stays axial
    ([1, 0, 0, 0, np.cos(np.radians(20)), -np.sin(np.radians(20))], IN, "axial"),
    ([0, 1, 0, 0, 0, -1], OUT, "sagittal"),
    ([1, 0, 0, 0, 0, -1], OUT, "coronal"),
    ([1, 0, 0, 0, np.cos(np.radians(40)), -np.sin(np.radians(40))], OUT, "oblique"),
])
def test_orientation_from_dicom_headers(tmp_path, orientation, status, words):
    verdict = header_verdict(_first(tmp_path, ImageOrientationPatient=[float(v) for v in orientation]))
    assert verdict.status == status
    assert words in verdict.reason


@pytest.mark.parametrize("extra, words", [
    ({"ImageType": ["ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"]}, "diffusion"),
    ({"ImageType": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"]}, "diffusion"),
    ({"DiffusionBValue": 1000.0}, "b = 1000"),
    ({"ScanningSequence": ["EP"], "SequenceVariant": ["SK"]}, "echo-planar"),
    ({"ImageType": ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]}, "fMRI or perfusion"),
    ({"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, "localiser"),
    ({"SeriesDescription": "3-Plane Loc"}, "localiser"),
    ({"SeriesDescription": "AAHead_Scout_64ch"}, "localiser"),
    ({"SeriesDescription": "ep2d_diff_mddw_20"}, "diffusion"),
    ({"ImageType": ["DERIVED", "SECONDARY", "OTHER"]}, "secondary"),
    ({"ImageType": ["DERIVED", "PRIMARY", "MPR"]}, "reformat"),
    ({"ImageType": ["DERIVED", "PRIMARY", "PROJECTION IMAGE"]}, "projection"),
    ({"Modality": "CT"}, "CT image"),
])
def test_header_rules_put_slices_out_of_scope(tmp_path, extra, words):
    verdict = header_verdict(_first(tmp_path, **extra))
    assert verdict.status == OUT and verdict.evidence == "headers"
    assert words in verdict.reason


def test_ordinary_descriptions_and_b0_stay_in(tmp_path):
    """Words are matched whole ("diff" must not fire inside "different"), and a b-value of 0 (which some makers write
    on every image) is no evidence of diffusion."""
    verdict = header_verdict(_first(tmp_path, SeriesDescription="AX FLAIR different TE", DiffusionBValue=0.0,
                                    ImageType=["ORIGINAL", "PRIMARY", "M", "NORM"]))
    assert verdict.status == IN


def test_headers_that_cannot_tell_leave_the_slice_undecided(tmp_path):
    png = tmp_path / "slice.png"
    import cv2

    from brainmri_desktop.core.demo import head_image

    cv2.imwrite(str(png), head_image(64, 64))
    assert header_verdict(read_file(png)[0]).status == UNDECIDED
    no_orientation = Slice(tmp_path / "x.dcm", np.zeros((4, 4)), series=SeriesInfo("1", modality="MR"),
                           acquisition=Acquisition())
    assert header_verdict(no_orientation).status == UNDECIDED
    assert tilt_from_axial((1, 0, 0, 1, 0, 0)) is None  # parallel cosines: a broken header, not a plane


def test_blank_input_is_out_of_scope_with_its_reason(tmp_path):
    blank = Slice(tmp_path / "blank.png", np.zeros((64, 64), np.uint8))
    pre = preprocess_slice(blank, PreprocessSpec(input_size=32))
    verdict = assess(blank, pre, None, None)
    assert verdict.out_of_scope and "no head" in verdict.reason and verdict.evidence == "image"


@requires_data("kaggle-navoneel", "no", "1 no.jpeg")
@pytest.mark.parametrize("package", ["brainmri-cnn-small", "brainmri-resnet50"])
def test_the_navoneel_blank_jpeg_is_out_of_scope(package):
    """Under the bundled models' preprocessing this image becomes an all-black model input."""
    from brainmri_desktop.core.packages import bundled_models_dir

    from .conftest import DATA

    spec = read_package(bundled_models_dir() / package).preprocessing
    slice_ = read_file(DATA / "kaggle-navoneel" / "no" / "1 no.jpeg")[0]
    pre = preprocess_slice(slice_, spec)
    assert pre.image.max() == 0
    verdict = assess(slice_, pre, None, None)
    assert verdict.out_of_scope and "no head" in verdict.reason


def _tiny_model():
    from trainer.architectures import ArchConfig, build_cnn

    return build_cnn(ArchConfig(cnn_widths=(4, 8, 8)))


def _heads(n: int, seed: int) -> np.ndarray:
    from brainmri_desktop.core.demo import head_image

    rng = np.random.default_rng(seed)
    return np.stack([preprocess_values(head_image(48, 48, seed=int(rng.integers(1 << 30))).astype(np.float32), None,
                                       PreprocessSpec(input_size=32)).image for _ in range(n)])


def _stripes(n: int) -> np.ndarray:
    xx = np.arange(32, dtype=np.float32)
    return np.stack([np.tile(((xx // (1 + k % 4)) % 2)[None, :], (32, 1)) for k in range(n)])


def test_ood_fit_and_score_round_trip_separates_stripes_from_heads():
    from trainer.scope_fit import choose_threshold, fit_detector

    model = _tiny_model()
    layers = ("block1_relu", "block2_relu", "block3_relu")
    net = scoring_model(model, layers)
    logits, feats = run_scoring(net, _heads(4, 9), "unit", grid=2)
    assert logits.shape == (4,) and feats.shape == (4, 4 * (4 + 8 + 8))
    _l, train = run_scoring(net, _heads(60, 1), "unit", grid=2)
    detector = fit_detector(train, layers, grid=2, n_components=8)
    _l, val = run_scoring(net, _heads(40, 2), "unit", grid=2)
    scores = detector.score(val)
    threshold = choose_threshold(scores, np.array(["a"] * 20 + ["b"] * 20), np.zeros(40, bool), max_out=0.05)
    assert (scores[:20] > threshold).mean() <= 0.05 and (scores[20:] > threshold).mean() <= 0.05
    _l, stripes = run_scoring(net, _stripes(12), "unit", grid=2)
    assert (detector.score(stripes) > threshold).mean() >= 0.9
    again = detector_from_bytes(detector.to_bytes(), Path("x"))
    np.testing.assert_allclose(again.score(val), scores, rtol=1e-4)
    assert again.layers == layers and again.grid == 2


def test_a_channel_silent_in_training_cannot_throw_an_ordinary_image_far():
    """The 128 px ResNet50's first fit: six channels silent on every training image, and a faint response in one of
    them put ordinary validation slices at distances of 10^4, which then set the threshold."""
    from trainer.scope_fit import fit_detector

    rng = np.random.default_rng(0)
    train = rng.normal(1.0, 0.2, (300, 24))
    train[:, 5] = 0.0  # a ReLU channel that never fired in training
    detector = fit_detector(train, ("block1_relu",), n_components=8)
    typical = rng.normal(1.0, 0.2, (50, 24))
    typical[:, 5] = 0.0
    faint = typical.copy()
    faint[:, 5] = 0.01  # the same slices with that channel barely lit
    assert np.median(detector.score(faint)) < 1.5 * np.median(detector.score(typical))


def test_threshold_counts_blank_slices_against_each_source():
    from trainer.scope_fit import choose_threshold

    scores = np.arange(100, dtype=float)
    sources = np.array(["a"] * 100)
    # 2 % of 100 may be out; two blank slices use that share, so no score may lie above the threshold
    assert choose_threshold(scores, sources, np.isin(np.arange(100), [0, 1])) >= 99
    assert 97 <= choose_threshold(scores, sources, np.zeros(100, bool)) < 98


@pytest.mark.parametrize("seed", range(8))
def test_a_stored_detector_keeps_in_scope_every_slice_its_threshold_kept_in(seed):
    """Features far from zero against their spread (as cell means of unnormalised layers can be) make the float32
    storage move every score; the threshold must be set on the detector as stored, with room for that round-off."""
    from trainer.scope_fit import stored_fit, with_threshold

    rng = np.random.default_rng(seed)
    offset = rng.uniform(-1e3, 1e3, 24)
    x_train = offset + rng.normal(size=(200, 24)) * rng.uniform(0.1, 3, 24)
    x_val = offset + rng.normal(size=(300, 24)) * rng.uniform(0.1, 3, 24)
    sources = np.repeat(np.array(["a", "b", "c"]), 100)
    blank = np.zeros(300, bool)
    fitted = stored_fit(x_train, ("f",))
    detector, val = with_threshold(fitted, fitted.score(x_val), sources, blank)
    loaded = detector_from_bytes(detector.to_bytes(), Path("pkg"))
    inside = loaded.score(x_val) <= loaded.threshold
    for source, rate in val.items():
        assert rate["in_scope"] >= 0.98
        assert inside[sources == source].sum() == round(rate["in_scope"] * rate["n"])


def test_a_saved_and_loaded_fit_keeps_in_scope_every_validation_slice_in_scope_at_fit_time(tmp_path):
    """`fit` sets the threshold on validation; the package stores the detector in float32. Scored as the session
    scores them (the detector read back from the package, batches of 32), no source may lose a slice that the
    recorded validation share counted in: a threshold set on the unrounded fit put a bundled LGG slice out."""
    import cv2

    from brainmri_desktop.core.demo import head_image
    from brainmri_desktop.core.manifest import Manifest, OperatingPoint
    from brainmri_desktop.core.packages import write_package
    from trainer.data import Sample
    from trainer.scope_fit import features, fit, write_scope

    rng = np.random.default_rng(5)

    def samples(part: str, source: str, n: int) -> list[Sample]:
        (tmp_path / part).mkdir(exist_ok=True)
        out = []
        for i in range(n):
            path = tmp_path / part / f"{source}{i}.png"
            cv2.imwrite(str(path), head_image(48, 48, seed=int(rng.integers(1 << 30))))
            out.append(Sample(path, 0, source))
        return out

    sources = ("a", "b", "c", "d")
    parts = {"train": [s for src in sources for s in samples("train", src, 30)],
             "val": [s for src in sources for s in samples("val", src, 60)]}
    model = _tiny_model()
    folder = write_package(tmp_path / "pkg", Manifest(
        id="pkg", name="Pkg", architecture="cnn", preprocessing=PreprocessSpec(input_size=32),
        gradcam_layer="block3_relu", temperature=1.0, threshold=OperatingPoint(0.5, "youden_j", "synthetic", 0.9, 0.8),
        files={}), model)
    manifest = read_package(folder)
    detector, metrics = fit(model, manifest, parts, per_source=None, log=lambda _m: None)
    write_scope(folder, detector, metrics, {"orientations": ["axial"], "sequences": {}, "input_kinds": ["PNG"],
                                            "not_seen": []}, "")
    loaded = load_ood(folder, read_package(folder))
    feats, blank, val_sources = features(scoring_model(model, loaded), parts["val"], manifest, loaded.grid,
                                         batch_size=32)
    inside = (loaded.score(feats) <= loaded.threshold) & ~blank
    for source in sources:
        recorded = metrics["validation"][source]
        assert recorded["in_scope"] >= 0.98  # the fit left at most its 2 % out
        assert inside[val_sources == source].sum() >= round(recorded["in_scope"] * recorded["n"])


def write_fitted_package(folder: Path) -> Path:
    """A tiny CNN package whose scope fit (three layers, 2 x 2 cells) was fitted on synthetic heads, its threshold set
    on other heads as `fit-scope` sets it: heads are in scope, stripe patterns far outside."""
    from brainmri_desktop.core.manifest import Manifest, OperatingPoint
    from brainmri_desktop.core.packages import write_package
    from trainer.scope_fit import choose_threshold, fit_detector, write_scope

    model = _tiny_model()
    layers = ("block1_relu", "block2_relu", "block3_relu")
    write_package(folder, Manifest(
        id="fitted", name="Fitted", architecture="cnn", preprocessing=PreprocessSpec(input_size=32),
        gradcam_layer="block3_relu", temperature=1.0, threshold=OperatingPoint(0.5, "youden_j", "synthetic", 0.9, 0.8),
        files={}), model)
    net = scoring_model(model, layers)
    _l, train = run_scoring(net, _heads(60, 1), "unit", grid=2)
    detector = fit_detector(train, layers, grid=2, n_components=8)
    _l, val = run_scoring(net, _heads(40, 2), "unit", grid=2)
    threshold = choose_threshold(detector.score(val), np.array(["a"] * 40), np.zeros(40, bool), max_out=0.05)
    detector = replace(detector, threshold=threshold)
    metrics = {"layers": list(layers), "grid": 2, "train_images": 60, "components": 8, "threshold": threshold,
               "max_out": 0.05, "validation": {"a": {"n": 40, "in_scope": 0.95}}}
    trained = {"orientations": ["axial"], "sequences": {"a": "synthetic"}, "input_kinds": ["PNG"], "not_seen": []}
    write_scope(folder, detector, metrics, trained, "")
    return folder


@pytest.fixture()
def scoped_package(tmp_path):
    """A package written by the core's writer, with an OOD fit added the way `fit-scope` adds it."""
    from brainmri_desktop.core.manifest import Manifest, OperatingPoint
    from brainmri_desktop.core.packages import write_package
    from trainer.scope_fit import card_section, fit_detector, write_scope

    model = _tiny_model()
    point = OperatingPoint(0.5, "youden_j", "synthetic", 0.9, 0.8)
    folder = write_package(tmp_path / "scoped", Manifest(
        id="scoped", name="Scoped", architecture="cnn", preprocessing=PreprocessSpec(input_size=32),
        gradcam_layer="block3_relu", temperature=1.0, threshold=point, files={}), model,
        {"MODEL_CARD.md": b"# card\n\n## Known limitations\n- none\n"})
    layers = ("block3_relu",)
    _l, train = run_scoring(scoring_model(model, layers), _heads(30, 3), "unit")
    detector = fit_detector(train, layers, n_components=4)
    metrics = {"layers": list(layers), "grid": 1, "train_images": 30, "components": 4, "threshold": 1.0, "max_out": 0.02,
               "validation": {"a": {"n": 30, "in_scope": 1.0}}}
    trained = {"orientations": ["axial"], "sequences": {"a": "FLAIR"}, "input_kinds": ["PNG"], "not_seen": ["x"]}
    write_scope(folder, detector, metrics, trained, card_section(trained, metrics, "test"))
    return folder


def test_package_with_an_ood_file_loads(scoped_package):
    manifest = read_package(scoped_package)
    assert manifest.ood_file == OOD_FILE and manifest.trained_on["orientations"] == ["axial"]
    assert manifest.files[OOD_FILE] == sha256_file(scoped_package / OOD_FILE)
    detector = load_ood(scoped_package, manifest)
    assert detector.layers == ("block3_relu",) and detector.dim == 8
    card = (scoped_package / "MODEL_CARD.md").read_text()
    assert card.index("## Scope") < card.index("## Known limitations")


def test_tampered_ood_file_is_refused(scoped_package):
    path = scoped_package / OOD_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="ood.npz does not match"):
        read_package(scoped_package)


def test_a_malformed_ood_file_with_a_matching_hash_is_refused(scoped_package):
    """The hash only proves the file is the one listed; its contents are checked too."""
    manifest_path = scoped_package / "manifest.json"
    (scoped_package / OOD_FILE).write_bytes(b"not an npz archive")
    d = json.loads(manifest_path.read_text())
    d["files"][OOD_FILE] = sha256_file(scoped_package / OOD_FILE)
    manifest_path.write_text(json.dumps(d))
    with pytest.raises(ModelPackageError, match="ood.npz cannot be read"):
        load_ood(scoped_package, read_package(scoped_package))


def test_manifest_naming_an_unlisted_ood_file_is_refused(scoped_package):
    manifest_path = scoped_package / "manifest.json"
    d = json.loads(manifest_path.read_text())
    del d["files"][OOD_FILE]
    (scoped_package / OOD_FILE).unlink()
    manifest_path.write_text(json.dumps(d))
    with pytest.raises(ModelPackageError, match="ood.npz"):
        read_package(scoped_package)


def test_assess_combines_headers_image_and_model_score(tmp_path):
    from types import SimpleNamespace

    from brainmri_desktop.core.scope import rule_check

    axial = _first(tmp_path / "ax")
    pre = preprocess_slice(axial, PreprocessSpec(input_size=32))
    ood = SimpleNamespace(threshold=10.0)
    assert assess(axial, pre, 3.0, ood).status == IN
    far = assess(axial, pre, 25.0, ood)
    assert far.out_of_scope and far.evidence == "model" and "unlike the images" in far.reason
    assert assess(axial, pre, None, None).status == IN  # the headers alone say axial MR
    sagittal = _first(tmp_path / "sag", ImageOrientationPatient=[0.0, 1.0, 0.0, 0.0, 0.0, -1.0])
    assert assess(sagittal, pre, 3.0, ood).evidence == "headers"  # headers decide before the score
    assert rule_check(sagittal, pre).kind is Kind.SAGITTAL and "sagittal" in rule_check(sagittal, pre).reason
    assert rule_check(axial, pre) is None


def test_a_source_mostly_blank_keeps_its_share_on_its_readable_slices():
    from trainer.scope_fit import choose_threshold

    scores = np.arange(200, dtype=float)
    blank = np.zeros(200, bool)
    blank[:120] = True  # 60 % blank: more than the 2 % share by far
    threshold = choose_threshold(scores, np.array(["a"] * 200), blank, max_out=0.05)
    assert (scores[~blank] > threshold).sum() == 4  # 5 % of the 80 readable slices


def test_series_verdict_counts_slices_by_their_kind_whatever_the_words(tmp_path):
    """A sagittal slice said so by its header and one read from its pixels are one kind: the summary counts kinds,
    never the words of the reasons (which differ by evidence and carry each slice's own detail)."""
    from brainmri_desktop.core.scope import image_verdict, series_verdict

    by_header = header_verdict(_first(tmp_path, ImageOrientationPatient=[0.0, 1.0, 0.0, 0.0, 0.0, -1.0]))
    by_pixels = ScopeVerdict(OUT, Kind.SAGITTAL, "a sagittal slice, read from its pixels (no header gives the "
                             "orientation; plane classifier 0.97); the model was trained on axial slices",
                             Evidence.IMAGE)
    assert by_header.kind is by_pixels.kind and by_header.reason.split(" (")[0] != by_pixels.reason.split(" (")[0]
    blank = image_verdict(preprocess_values(np.zeros((32, 32)), None, PreprocessSpec(input_size=32)))
    verdict = series_verdict([by_header] * 4 + [by_pixels] * 4 + [blank, None])
    assert verdict.out_of_scope and verdict.evidence is Evidence.SERIES and verdict.kind is Kind.SAGITTAL
    assert verdict.reason == "a sagittal slice (8 of 10 slices; 1 for other reasons)"
    localiser = ScopeVerdict(OUT, Kind.LOCALISER, "a localiser (scout) image", Evidence.HEADERS)
    mostly_in = series_verdict([None] * 9 + [localiser])
    assert mostly_in.status is IN and mostly_in.reason == "1 of 10 slices out of scope"
    assert series_verdict([None, None]).reason == "all 2 slices in scope"
    assert series_verdict([]) is None  # nothing judged yet


def test_the_card_counts_confident_tumour_slices_each_check_hides_before_and_after(tmp_path):
    """The feature distance would have hidden confident stripes before issue 25 and hides none now; a blank image
    is hidden either way (each check counts on its own). At threshold 0 every tumour slice is confident."""
    import cv2

    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.packages import ModelEntry
    from trainer.card import HIDDEN_TITLE, hidden_findings, hidden_lines
    from trainer.data import Sample

    folder = write_fitted_package(tmp_path / "pkg")
    manifest = read_package(folder)
    manifest = replace(manifest, threshold=replace(manifest.threshold, threshold=0.0))
    model = LoadedModel.load(ModelEntry(folder, "dir", manifest=manifest), "keras")
    samples = []
    for i, image in enumerate([*_stripes(6), np.zeros((32, 32))]):
        samples.append(Sample(tmp_path / f"s{i}.png", 1, "a"))
        cv2.imwrite(str(samples[-1].path), (image * 255).astype(np.uint8))
    samples.append(Sample(tmp_path / "head.png", 0, "a"))  # no tumour: never counted
    cv2.imwrite(str(samples[-1].path), (_heads(1, 3)[0] * 255).astype(np.uint8))
    row = hidden_findings(model, samples)["a"]
    assert row["tumour"] == row["over_threshold"] == 7
    distance, blank = row["feature distance"], row["blank image"]
    assert distance["out"] == distance["hidden_before"] >= 5 and distance["hidden_after"] == 0
    assert blank["out"] == blank["hidden_before"] == blank["hidden_after"] >= 1  # the empty frame, whatever else
    lines = hidden_lines({"a": row})
    assert lines.startswith(HIDDEN_TITLE) and f"| {distance['hidden_before']} / 0 |" in lines


def test_what_a_package_says_it_was_trained_on_names_the_planes_only_tumours_came_in():
    """figshare (in kaggle-4class) brings sagittal and coronal slices that are all tumours: a package trained on it
    says so, and does not claim it never saw those planes; one trained without it does not mention them."""
    from trainer.config import TrainConfig
    from trainer.scope_fit import trained_on

    with_figshare = trained_on(TrainConfig.from_dict({"data": ["../shared/data/kaggle-4class", "x/lgg-flair"]}))
    assert "every one a tumour" in with_figshare["orientations_note"]
    assert with_figshare["not_seen"][0].startswith("tumour-free sagittal or coronal")
    without = trained_on(TrainConfig.from_dict({"data": ["x/lgg-flair"], "exclude_sources": []}))
    assert "orientations_note" not in without and without["not_seen"][0].startswith("sagittal, coronal")
