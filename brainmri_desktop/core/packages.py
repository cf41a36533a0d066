"""Model packages on disk and the registry that finds them.

A package is a folder: `architecture.json` (the Keras model config), `weights.npz` (the weights, half precision where
that keeps a bundle small), `manifest.json`, and usually `MODEL_CARD.md`. The manifest lists the sha256 of every other
file; a package whose files are missing, added or changed is refused as a whole and never half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .atomic import atomic_write_folder
from .errors import ModelPackageError
from .manifest import MANIFEST_NAME, Manifest, parse_manifest

ENV_MODELS = "BRAINMRI_MODELS"
MAX_MANIFEST_BYTES = 1 << 20
MAX_WEIGHTS_BYTES = 512 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_models_dir() -> Path:
    """`resources/models` of the source tree, or of a PyInstaller build (which unpacks beside `sys._MEIPASS`)."""
    base = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2]))
    return base / "resources" / "models"


def user_models_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("BrainMRI", appauthor=False) / "models"


@dataclass(frozen=True)
class ModelEntry:
    """A package the registry found: a manifest that verified, or the error that made it unusable."""

    path: Path
    source: str  # bundled, user or dir
    manifest: Manifest | None = None
    error: ModelPackageError | None = None

    @property
    def ok(self) -> bool:
        return self.manifest is not None


def read_package(path: Path) -> Manifest:
    """Parse the manifest and check the folder holds exactly the listed files with the listed hashes."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelPackageError(path, "no manifest.json: not a model package")
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelPackageError(path, "manifest.json is implausibly large")
    manifest = parse_manifest(manifest_path.read_text(encoding="utf-8", errors="strict"), path)
    present = {p.name for p in path.iterdir() if p.name != MANIFEST_NAME and not p.name.startswith(".")}
    missing = sorted(set(manifest.files) - present)
    if missing:
        raise ModelPackageError(path, f"file missing from the package: {', '.join(missing)}")
    extra = sorted(present - set(manifest.files))
    if extra:
        raise ModelPackageError(path, f"file not listed in the manifest (package changed after export): {', '.join(extra)}")
    for name, expected in manifest.files.items():
        file = path / name
        if file.is_symlink() or not file.is_file():
            raise ModelPackageError(path, f"{name} is not a regular file")
        if sha256_file(file) != expected.lower():
            raise ModelPackageError(path, f"{name} does not match its sha256 in the manifest (changed or damaged)")
    # The key of what was just verified, computed here (start-up, a package that changed) rather than by the
    # window's UI thread when the first study opens, where it cost 15-30 ms of frozen event loop.
    _ = manifest.content_key
    return manifest


def search_dirs(extra: list[Path] | None = None) -> list[tuple[Path, str]]:
    dirs = [(bundled_models_dir(), "bundled"), (user_models_dir(), "user")]
    env = os.environ.get(ENV_MODELS)
    if env:
        dirs += [(Path(p), "dir") for p in env.split(os.pathsep) if p]
    dirs += [(Path(p), "dir") for p in extra or []]
    return dirs


def _signature(folder: Path) -> tuple:
    """Every file's name, size and modification time: what tells a package changed, at the cost of a stat each."""
    try:
        return tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in folder.iterdir()
                            if (st := p.stat(follow_symlinks=False))))
    except OSError:
        return ()


class PackageCache:
    """What `discover` found per folder, kept while no file of the folder changed in size or modification time, so
    that looking again (the window does every few seconds) never re-hashes unchanged weights."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple, ModelEntry]] = {}

    def entry(self, folder: Path, source: str) -> ModelEntry:
        signature = _signature(folder)
        known = self._known.get(folder)
        if known is not None and signature and known[0] == signature:
            return known[1] if known[1].source == source else replace(known[1], source=source)
        entry = _read_entry(folder, source)
        self._known[folder] = (signature, entry)
        return entry


def _read_entry(folder: Path, source: str) -> ModelEntry:
    try:
        return ModelEntry(folder, source, manifest=read_package(folder))
    except ModelPackageError as exc:
        return ModelEntry(folder, source, error=exc)
    except (OSError, UnicodeDecodeError) as exc:
        return ModelEntry(folder, source, error=ModelPackageError(folder, f"cannot be read ({exc})"))


def discover(extra_dirs: list[Path] | None = None, cache: PackageCache | None = None) -> list[ModelEntry]:
    """Every package in the bundled, user and given folders (a given folder may itself be a package). With a cache,
    packages whose files did not change since the last call are not verified again."""
    entries: list[ModelEntry] = []
    seen: set[Path] = set()
    for base, source in search_dirs(extra_dirs):
        if not base.is_dir():
            continue
        candidates = [base] if (base / MANIFEST_NAME).exists() else sorted(p for p in base.iterdir() if p.is_dir())
        for folder in candidates:
            key = folder.resolve()
            if key in seen or folder.name.startswith("."):
                continue
            seen.add(key)
            entries.append(cache.entry(folder, source) if cache is not None else _read_entry(folder, source))
    return entries


def _load_weights(path: Path) -> list[np.ndarray]:
    if path.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ModelPackageError(path.parent, "weights file is implausibly large")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = sorted(archive.files, key=lambda n: int(n.split("_")[-1]))
            return [archive[n].astype(np.float32) for n in names]
    except (ValueError, OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelPackageError(path.parent, f"weights cannot be read ({exc})") from None


def load_keras_model(path: Path, manifest: Manifest):
    """Build the Keras model from its config in safe mode (no arbitrary code) and set its weights."""
    import keras

    from . import cell_layers  # noqa: F401 - registers the layers a cell-scored model's config names

    try:
        config = json.loads((path / manifest.architecture_file).read_text(encoding="utf-8"))
        # safe_mode refuses Lambda layers and anything else that would run code stored in the package.
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if not isinstance(model, keras.Model):
            raise TypeError("not a model")
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad configs
        raise ModelPackageError(path, f"architecture cannot be built ({type(exc).__name__}: {str(exc)[:160]})") from None
    weights = _load_weights(path / manifest.weights_file)
    expected = [tuple(w.shape) for w in model.weights]
    if [tuple(w.shape) for w in weights] != expected:
        raise ModelPackageError(path, "weights do not match the architecture")
    model.set_weights(weights)
    for name in (manifest.gradcam_layer, "logit"):
        try:
            model.get_layer(name)
        except ValueError:
            raise ModelPackageError(path, f"model has no layer {name!r} named in the manifest") from None
    return model


def rounded_weights(model, dtype: str) -> list[np.ndarray]:
    """The model's weights as a package in `dtype` gives them back when it is loaded (float32 again)."""
    return [np.asarray(w).astype(dtype).astype(np.float32) for w in model.get_weights()]


def weights_archive(model, dtype: str) -> bytes:
    """The model's weights as an .npz in the given precision, in a stable order."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"w_{i}": np.asarray(w).astype(dtype) for i, w in enumerate(model.get_weights())})
    return buffer.getvalue()


def write_package(
    target: Path, manifest: Manifest, model, extra_files: dict[str, bytes] | None = None, force: bool = False
) -> Path:
    """Write a complete package atomically (core.atomic: a temporary folder beside the target, then one rename)."""
    target = Path(target)
    if target.exists() and not force:
        raise ModelPackageError(target, "a package with this id exists already (use --force to replace it)")
    contents = {
        manifest.architecture_file: model.to_json().encode("utf-8"),
        manifest.weights_file: weights_archive(model, manifest.weights_dtype),
        **(extra_files or {}),
    }
    files = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    manifest = replace(manifest, files=files)
    atomic_write_folder(target, {**contents, MANIFEST_NAME: manifest.to_json().encode("utf-8")})
    return target
