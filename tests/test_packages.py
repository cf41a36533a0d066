from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainmri_desktop.core.errors import ModelPackageError
from brainmri_desktop.core.inference import LoadedModel
from brainmri_desktop.core.packages import discover, read_package


def _copy(model_dir, tmp_path, name="tiny-cnn"):
    target = tmp_path / "models" / name
    shutil.copytree(model_dir / name, target)
    return target


def test_written_package_verifies_and_loads(model_dir):
    manifest = read_package(model_dir / "tiny-cnn")
    assert manifest.id == "tiny-cnn" and manifest.temperature == 1.5 and manifest.logit_bias == 0.3
    assert set(manifest.files) == {"architecture.json", "weights.npz"}
    entries = [e for e in discover([model_dir]) if e.source == "dir"]
    assert {e.manifest.id for e in entries if e.ok} == {"tiny-cnn", "spot"}
    model = LoadedModel.load(next(e for e in entries if e.ok and e.manifest.id == "tiny-cnn"))
    size = manifest.preprocessing.input_size
    logits = model.logits(np.random.default_rng(0).random((3, size, size), dtype=np.float32))
    assert logits.shape == (3,) and np.isfinite(logits).all()  # the weights loaded into a model that runs


@pytest.mark.parametrize("damage,reason", [
    ("change", "does not match its sha256"),
    ("remove", "file missing"),
    ("add", "not listed in the manifest"),
    ("manifest", "not valid JSON"),
    ("schema", "unsupported manifest schema"),
    ("bias", "calibration bias nan is implausible"),
])
def test_tampered_packages_are_refused_with_a_reason(model_dir, tmp_path, damage, reason):
    pkg = _copy(model_dir, tmp_path)
    if damage == "change":
        data = bytearray((pkg / "weights.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (pkg / "weights.npz").write_bytes(bytes(data))
    elif damage == "remove":
        (pkg / "weights.npz").unlink()
    elif damage == "add":
        (pkg / "payload.py").write_text("print('hi')")
    elif damage == "manifest":
        (pkg / "manifest.json").write_text("{not json")
    else:
        d = json.loads((pkg / "manifest.json").read_text())
        if damage == "schema":
            d["schema_version"] = 99
        else:
            d["logit_bias"] = float("nan")
        (pkg / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ModelPackageError) as info:
        read_package(pkg)
    assert reason in info.value.reason and str(pkg) in str(info.value)
    entries = discover([pkg.parent])
    broken = [e for e in entries if e.path == pkg]
    assert broken and broken[0].error is not None and not broken[0].ok


def test_lambda_layer_in_architecture_is_refused(model_dir, tmp_path):
    """A re-hashed package whose config smuggles a Lambda layer must not run it: Keras safe mode refuses."""
    import hashlib

    pkg = _copy(model_dir, tmp_path)
    config = json.loads((pkg / "architecture.json").read_text())
    layer = config["config"]["layers"][1]
    layer["class_name"] = "Lambda"
    layer["config"] = {"name": layer["config"]["name"], "function": {"class_name": "__lambda__", "config": {
        "code": "4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk7pAgAAAKkAKQHaAXhyAgAAAHICAAAA+gg8c3RyaW5nPtoIPGxhbWJkYT4BAAAA8wAAAAA=",
        "defaults": None, "closure": None}}}
    text = json.dumps(config)
    (pkg / "architecture.json").write_text(text)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"]["architecture.json"] = hashlib.sha256(text.encode()).hexdigest()
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    entry = next(e for e in discover([pkg.parent]) if e.path == pkg)
    with pytest.raises(ModelPackageError) as info:
        LoadedModel.load(entry)
    assert "architecture cannot be built" in info.value.reason


def test_export_over_existing_id_needs_force(model_dir, tmp_path):
    from brainmri_desktop.core.packages import load_keras_model, write_package

    pkg = _copy(model_dir, tmp_path)
    manifest = read_package(pkg)
    model = load_keras_model(pkg, manifest)
    with pytest.raises(ModelPackageError):
        write_package(pkg, manifest, model)
    write_package(pkg, manifest, model, force=True)
    assert read_package(pkg).id == "tiny-cnn"
    assert not [p for p in pkg.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_half_precision_package_loads_back_and_predicts_like_the_original(model_dir, tmp_path):
    from dataclasses import replace

    import numpy as np

    from brainmri_desktop.core.packages import write_package

    original = LoadedModel.load(next(e for e in discover([model_dir]) if e.ok and e.manifest.id == "tiny-cnn"))
    half = replace(original.manifest, id="tiny-half", weights_dtype="float16", files={})
    write_package(tmp_path / "tiny-half", half, original.keras_model)
    full_size = (model_dir / "tiny-cnn" / "weights.npz").stat().st_size
    assert (tmp_path / "tiny-half" / "weights.npz").stat().st_size < 0.7 * full_size
    loaded = LoadedModel.load(next(e for e in discover([tmp_path]) if e.ok and e.manifest.id == "tiny-half"))
    assert all(w.dtype == np.float32 for w in loaded.keras_model.get_weights())
    images = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(loaded.logits(images), original.logits(images), atol=2e-2)


def test_looking_again_never_hashes_unchanged_packages_and_sees_a_changed_one(model_dir, tmp_path, monkeypatch):
    import os

    from brainmri_desktop.core import packages

    pkg = _copy(model_dir, tmp_path)
    hashed = []
    real = packages.sha256_file
    monkeypatch.setattr(packages, "sha256_file", lambda path: hashed.append(path) or real(path))
    cache = packages.PackageCache()
    first = discover([tmp_path / "models"], cache=cache)  # the bundled packages too
    assert sorted(p.name for p in hashed if p.parent == pkg) == ["architecture.json", "weights.npz"] and first[-1].ok
    hashed.clear()
    for _ in range(3):
        again = discover([tmp_path / "models"], cache=cache)
    assert hashed == [] and again[-1].manifest == first[-1].manifest
    data = bytearray((pkg / "weights.npz").read_bytes())
    data[-10] ^= 0xFF  # same size: only the modification time tells
    (pkg / "weights.npz").write_bytes(bytes(data))
    st = (pkg / "weights.npz").stat()
    os.utime(pkg / "weights.npz", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    changed = discover([tmp_path / "models"], cache=cache)[-1]
    assert not changed.ok and "sha256" in changed.error.reason and pkg / "weights.npz" in hashed


def test_package_folders_are_written_through_core_atomic(model_dir, tmp_path, monkeypatch):
    """A failure while writing leaves the previous package whole and no temporary folder beside it."""
    from brainmri_desktop.core import atomic
    from brainmri_desktop.core.packages import write_package
    from tests.synthetic import bright_spot_model

    pkg = _copy(model_dir, tmp_path, "spot")
    before = {p.name: p.read_bytes() for p in pkg.iterdir()}
    manifest = read_package(pkg)

    def full_disk(f, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic, "_write_synced", full_disk)
    with pytest.raises(OSError):
        write_package(pkg, manifest, bright_spot_model(), force=True)
    assert {p.name: p.read_bytes() for p in pkg.iterdir()} == before
    assert [p.name for p in pkg.parent.iterdir()] == ["spot"]


def test_reading_a_package_computes_its_content_key(model_dir):
    """Issue 24.5: the key is computed where the package is verified (start-up, a changed package), not by the
    window's UI thread when the first study opens, where it froze the event loop for 15-30 ms."""
    manifest = read_package(model_dir / "tiny-cnn")
    assert "content_key" in vars(manifest)
    assert manifest.content_key == read_package(model_dir / "tiny-cnn").content_key


def test_the_windows_model_cache_reloads_a_package_re_exported_under_the_same_id(model_dir, tmp_path):
    """Issue 25.1: the model's engine is remembered by the package's content, not its id, so a re-exported or re-fitted
    package under the same id is loaded again instead of mixing the old weights with the new manifest."""
    from brainmri_desktop.ui.workers import _ready

    shutil.copytree(model_dir / "tiny-cnn", tmp_path / "a" / "tiny-cnn")
    shutil.copytree(model_dir / "tiny-cnn", tmp_path / "b" / "tiny-cnn")
    manifest = tmp_path / "b" / "tiny-cnn" / "manifest.json"
    refit = json.loads(manifest.read_text())
    refit["threshold"]["threshold"] = 0.42
    manifest.write_text(json.dumps(refit))
    first, again = (next(e for e in discover([tmp_path / d]) if e.ok and e.manifest.id == "tiny-cnn") for d in "ab")
    assert first.manifest.id == again.manifest.id and first.manifest.content_key != again.manifest.content_key
    engines: dict = {}
    try:
        engine = _ready(first, engines)
        assert _ready(first, engines) is engine
        reloaded = _ready(again, engines)
        assert reloaded is not engine and reloaded.manifest.threshold.threshold == 0.42
    finally:
        for started in engines.values():
            started.close()


def test_a_package_re_exported_under_the_same_id_is_run_again(model_dir, tmp_path, qtbot):
    """Issue 25.1: the model list sees the chosen package's new content and says so (the window then re-runs), and
    every series of the study needs the new model's triage."""
    import numpy as np

    from brainmri_desktop.core.inference import SliceResult
    from brainmri_desktop.core.io.slices import Slice
    from brainmri_desktop.core.session import Session, Study
    from brainmri_desktop.ui.model_bar import ModelBar

    for d, threshold in (("a", 0.5), ("b", 0.42)):
        shutil.copytree(model_dir / "tiny-cnn", tmp_path / d / "tiny-cnn")
        manifest = tmp_path / d / "tiny-cnn" / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()),
                                        "threshold": {"threshold": threshold, "method": "youden_j", "data": "v"}}))
    old, new = ([e for e in discover([tmp_path / d]) if e.ok and e.manifest.id == "tiny-cnn"] for d in "ab")
    bar = ModelBar()
    qtbot.addWidget(bar)
    bar.set_entries(old)
    bar.choose("tiny-cnn")
    assert not bar.set_entries(old) and bar.set_entries(new) and bar.entry.manifest.threshold.threshold == 0.42
    session = Session([Slice(tmp_path / "s.png", np.zeros((8, 8), np.uint8))])
    session.start(old[0].manifest)
    session.results = {0: SliceResult(0, 0.5, 0.0, 0.5, 0.5, 1, 0.5)}
    assert not Study.needs_triage(session, old[0].manifest) and Study.needs_triage(session, new[0].manifest)
