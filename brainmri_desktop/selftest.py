"""`brainmri-desktop --self-test`: loads every model found, predicts with Grad-CAM on a generated slice and a generated
DICOM series, prints the results and exits 0 only when everything worked. Used to check an installed build."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__


def build_commit() -> str:
    """The git commit: recorded in a frozen build at packaging time, else asked of the source tree."""
    frozen = Path(getattr(sys, "_MEIPASS", "")) / "BUILD_COMMIT"
    if getattr(sys, "frozen", False) and frozen.exists():
        return frozen.read_text().strip()
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def version_line(models_dirs=None) -> str:
    from .core.packages import discover

    ids = ", ".join(f"{e.manifest.id} ({e.source})" for e in discover(models_dirs) if e.ok)
    return f"BrainMRI {__version__} (commit {build_commit()}); models: {ids or 'none'}"


def _compressed_dicom_check(plain, path: Path) -> list[str]:
    """Re-encodes a slice as JPEG 2000 and reads it back: a frozen build must carry the pylibjpeg decoders, which
    pydicom finds through package metadata that a build can leave out."""
    import numpy as np
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from .core.io import load_paths

    try:
        ds = pydicom.dcmread(plain.path)
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        ds.save_as(path)
        report = load_paths([path])
        if report.errors:
            return [f"JPEG 2000 DICOM: {report.errors[0].reason}"]
        same = np.array_equal(report.slices[0].pixels, plain.pixels)
        print(f"JPEG 2000 DICOM: decoded {'losslessly' if same else 'WITH DIFFERENCES'}")
        return [] if same else ["JPEG 2000 DICOM: decoded pixels differ"]
    except Exception as exc:  # noqa: BLE001 - a self-test reports whatever broke
        return [f"JPEG 2000 DICOM: {type(exc).__name__}: {exc}"]


def _export_check(model) -> list[str]:
    """The package's reference slices against the probabilities its export recorded (Keras's, checked against the
    graphs there): a runtime that computes something else here fails the self-test."""
    import numpy as np

    from .core.demo import reference_slices
    from .core.inference import sigmoid
    from .core.onnx_graphs import MAX_PROBABILITY_DIFF
    from .core.preprocess import preprocess_values

    recorded = model.manifest.graph_check.get("reference_probabilities")
    if not recorded:
        print(f"{model.id}: no probabilities recorded at export to compare with")
        return []
    images = np.stack([preprocess_values(s, None, model.manifest.preprocessing).image for s in reference_slices()])
    now = sigmoid(model.manifest.calibrated_logit(model.logits(images)))
    diff = float(np.abs(now - np.asarray(recorded)).max()) if len(recorded) == len(now) else float("inf")
    ok = diff <= MAX_PROBABILITY_DIFF
    print(f"{model.id}: {model.device} against the export's probabilities: within {diff:.1e}" + (" OK" if ok else " FAILED"))
    return [] if ok else [f"{model.id}: probabilities differ from those recorded at export by {diff:.2g}"]


def _engine_check(entry, slices, expected: list[float]) -> list[str]:
    """The window computes in a child process (core/engine.py): a frozen build must be able to start itself as one
    and get the same probabilities back as this process did."""
    from .core.engine import Engine

    try:
        engine = Engine(entry)
        try:
            got = [r.probability for c in engine.triage(slices) for r in c.results.values()]
        finally:
            engine.close()
        diff = max(abs(a - b) for a, b in zip(got, expected)) if len(got) == len(expected) else float("inf")
        ok = diff <= 1e-5
        print(f"{entry.manifest.id} in the window's engine process ({engine.device}): within {diff:.1e} of this "
              "process" + (" OK" if ok else " FAILED"))
        return [] if ok else [f"{entry.manifest.id}: the engine process gave other probabilities ({diff:.2g})"]
    except Exception as exc:  # noqa: BLE001 - a self-test reports whatever broke
        return [f"{entry.manifest.id} in the engine process: {type(exc).__name__}: {exc}"]


def self_test(models_dirs=None) -> int:
    import numpy as np

    from .core import runtime
    from .core.demo import head_image, write_series
    from .core.inference import LoadedModel
    from .core.io import load_paths
    from .core.packages import discover
    from .core.preprocess import preprocess_slice, preprocess_values
    from .core.session import triage_chunks

    print(version_line(models_dirs))
    print(f"runtime: {runtime.device_description()}")
    entries = discover(models_dirs)
    failures = [f"{e.path}: {e.error.reason}" for e in entries if not e.ok]
    usable = [e for e in entries if e.ok]
    if not usable:
        failures.append("no usable model package found")
    with tempfile.TemporaryDirectory() as tmp:
        write_series(Path(tmp) / "series", n=4, size=96, tumour_slices=(1, 2))
        slices = load_paths([Path(tmp) / "series"]).slices
        failures += _compressed_dicom_check(slices[0], Path(tmp) / "j2k.dcm")
        for entry in usable:
            try:
                model = LoadedModel.load(entry)
                spec = model.manifest.preprocessing
                # a bare pixel array first (a non-square head), then the DICOM series, through the one triage path
                items = [head_image(120, 100, tumour=(50, 55, 9))] + slices
                chunks = list(triage_chunks(model, items, explain=lambda i, item: True, prepare=lambda item: (
                    preprocess_values(item, None, spec) if isinstance(item, np.ndarray) else preprocess_slice(item, spec))))
                results = [r for c in chunks for r in c.results.values()]
                cams = [m for c in chunks for m in c.cams.values()]
                ok = len(results) == len(cams) == len(items) and all(0 <= r.probability <= 1 for r in results) and all(
                    np.isfinite(c).all() and c.min() >= 0 and c.max() <= 1 for c in cams)
                # a package with a scope fit scores every slice in the same forward pass as its logit
                scored = all(r.ood_score is not None and np.isfinite(r.ood_score) for r in results)
                ok = ok and (scored if model.ood is not None else True)
                outside = sum(v is not None for c in chunks for v in c.verdicts.values())
                print(f"{entry.manifest.id}: " + ", ".join(f"{r.probability:.3f}" for r in results)
                      + f" (threshold {model.manifest.threshold.threshold:.3f}); Grad-CAM maps "
                      + ", ".join(f"{c.shape[1]}x{c.shape[0]}" for c in cams)
                      + f"; scope {'fit' if model.ood is not None else 'rules only'}, {outside} out of scope"
                      + (" OK" if ok else " FAILED"))
                if not ok:
                    failures.append(f"{entry.manifest.id}: implausible output")
                failures += _export_check(model)
                if entry is usable[0]:
                    failures += _engine_check(entry, slices, [r.probability for r in results[1:]])
            except Exception as exc:  # noqa: BLE001 - a self-test reports whatever broke
                failures.append(f"{entry.manifest.id}: {type(exc).__name__}: {exc}")
    for f in failures:
        print(f"FAILED {f}")
    print("self-test passed" if not failures else "self-test failed")
    return 0 if not failures else 1
