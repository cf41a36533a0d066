from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own per-user folders, so nothing touches the real user's models, settings or reviews."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("BRAINMRI_MODELS", raising=False)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A folder with one small CNN package, trained to see a bright disc (synthetic.BLOB_KINDS: none, small, large),
    and one 'bright spot' package (set by hand)."""
    from brainmri_desktop.core.manifest import Manifest, OperatingPoint
    from brainmri_desktop.core.packages import write_package
    from brainmri_desktop.core.preprocess import PreprocessSpec

    from .synthetic import bright_spot_model, train_blob_cnn

    root = tmp_path_factory.mktemp("models")
    temperature, bias = 1.5, 0.3
    cnn = train_blob_cnn(temperature, bias)
    point = OperatingPoint(0.5, "youden_j", "synthetic", 0.9, 0.8)
    write_package(root / "tiny-cnn", Manifest(
        id="tiny-cnn", name="Tiny CNN", architecture="cnn", preprocessing=PreprocessSpec(input_size=32),
        gradcam_layer="block3_relu", temperature=temperature, logit_bias=bias, threshold=point, files={}, default_tta=2,
        high_sensitivity=OperatingPoint(0.2, "sensitivity>=0.95", "synthetic", 0.95, 0.5),
        metrics={"validation": {"auc": {"value": 0.5}}}), cnn)
    write_package(root / "spot", Manifest(
        id="spot", name="Bright spot", architecture="cnn", preprocessing=PreprocessSpec(input_size=64),
        gradcam_layer="feat", temperature=1.0, threshold=point, files={}), bright_spot_model())
    return root


@pytest.fixture(scope="module")
def tiny(model_dir):
    """The tiny CNN of `model_dir`, loaded once per test module."""
    from brainmri_desktop.core.inference import LoadedModel
    from brainmri_desktop.core.model_choice import find_model
    from brainmri_desktop.core.packages import discover

    return LoadedModel.load(find_model(discover([model_dir]), "tiny-cnn"))


def requires_data(*parts: str):
    path = DATA.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"needs {path} (build it with ../shared/tools/get-data)")
