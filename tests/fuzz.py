"""Fuzzing the loaders: mutated DICOM, DICOMDIR, NIfTI, zip, PNG, JPEG and TIFF files, and mutated model manifests.

Every input must end in slices or a typed BrainMRIError. `make fuzz` runs the long campaign (`python -m tests.fuzz
--count 10000`, which reports its slowest input); tests/test_fuzz.py runs a short hypothesis-driven one in the suite.
The time each input takes is measured by benchmarks/robustness.py (`make bench`), not asserted.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import zipfile

import cv2
import numpy as np

from brainmri_desktop.core.demo import head_image
from brainmri_desktop.core.errors import BrainMRIError
from brainmri_desktop.core.io import load_paths
from brainmri_desktop.core.io.study import group_series, read_file
from brainmri_desktop.core.manifest import parse_manifest

def image_seeds() -> dict[str, bytes]:
    from pydicom.data import get_testdata_file

    seeds = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "emri_small.dcm", "rtplan.dcm"):
        seeds[name] = Path(get_testdata_file(name)).read_bytes()
    seeds["DICOMDIR"] = Path(get_testdata_file("DICOMDIR")).read_bytes()
    img = head_image(48, 40, tumour=(20, 20, 5))
    for suffix in (".png", ".jpg", ".tif", ".bmp"):
        ok, buf = cv2.imencode(suffix, img)
        seeds[f"seed{suffix}"] = buf.tobytes()
    seeds["seed.nii"] = _nifti_bytes(img)
    seeds["seed.nii.gz"] = gzip.compress(seeds["seed.nii"], mtime=0)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("study/a.png", seeds["seed.png"])
        zf.writestr("study/MR_small.dcm", seeds["MR_small.dcm"])
        zf.writestr("study/v.nii.gz", seeds["seed.nii.gz"])
    seeds["seed.zip"] = archive.getvalue()
    return seeds


def _nifti_bytes(img: np.ndarray) -> bytes:
    import nibabel as nib

    volume = np.stack([img, img[::-1], img[:, ::-1]], axis=-1).astype(np.int16)
    return nib.Nifti1Image(volume, np.diag([0.9, 1.1, 3.0, 1.0])).to_bytes()


def fuzz_name(prefix: str, seed_name: str) -> str:
    """A file name for a mutated seed that keeps what the loader dispatches on: its whole suffix (.nii.gz)."""
    suffix = ".nii.gz" if seed_name.endswith(".nii.gz") else Path(seed_name).suffix
    return f"{prefix}{suffix}"


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """A few random byte-level edits: flips, overwrites with interesting values, deletions, insertions, truncation."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        if not b:
            break
        op = int(rng.integers(0, 5))
        pos = int(rng.integers(0, len(b)))
        if op == 0:
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            value = [0x00, 0xFF, 0x7F, 0x80][int(rng.integers(0, 4))]
            for k in range(pos, min(len(b), pos + int(rng.integers(1, 5)))):
                b[k] = value
        elif op == 2:
            del b[pos : pos + int(rng.integers(1, 64))]
        elif op == 3:
            b[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8))
        else:
            del b[pos:]
    return bytes(b)


def check_file(name: str, data: bytes, folder: Path) -> str:
    path = folder / name
    path.write_bytes(data)
    if path.suffix in ("", ".zip"):  # archives and DICOMDIRs stand for several files: read as a study
        return "ok" if load_paths([path]).slices else "refused"
    try:
        group_series(read_file(path))
        return "ok"
    except BrainMRIError:
        return "refused"


def manifest_seed() -> str:
    return json.dumps({"schema_version": 1, "id": "fuzz", "name": "Fuzz", "architecture": "cnn",
                       "preprocessing": {"input_size": 64}, "gradcam_layer": "block3_relu", "temperature": 1.2,
                       "threshold": {"threshold": 0.4, "method": "youden_j", "data": "x"},
                       "files": {"architecture.json": "0" * 64, "weights.npz": "0" * 64}})


def check_manifest(text: str) -> str:
    try:
        parse_manifest(text, Path("fuzz"))
        return "ok"
    except BrainMRIError:
        return "refused"


def _keep(name: str, data: bytes) -> None:
    """A failing input is kept for inspection, and the campaign goes on."""
    (Path(tempfile.gettempdir()) / f"brainmri-fuzz-{name}").write_bytes(data)


def run(count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    seeds = image_seeds()
    names = sorted(seeds)
    manifest = manifest_seed().encode()
    outcomes = {"ok": 0, "refused": 0, "uncaught": 0}
    slowest = 0.0
    folder = Path(tempfile.mkdtemp(prefix="brainmri-fuzz-"))
    try:
        for i in range(count):
            t = time.perf_counter()
            if i % 10 == 9:
                name, data = "manifest.json", mutate(manifest, rng)
                check = lambda: check_manifest(data.decode("utf-8", errors="replace"))  # noqa: E731
            else:
                name = names[int(rng.integers(0, len(names)))]
                data = mutate(seeds[name], rng)
                check = lambda: check_file(fuzz_name(str(i), name), data, folder)  # noqa: E731
            try:
                outcomes[check()] += 1
            except Exception:  # noqa: BLE001 - what the campaign counts; a BaseException would end it, as it should
                outcomes["uncaught"] += 1
                _keep(f"uncaught-{i}-{name}", data)
            for leftover in folder.iterdir():
                leftover.unlink()
            slowest = max(slowest, time.perf_counter() - t)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"inputs": count, **outcomes, "slowest_s": round(slowest, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t = time.perf_counter()
    print(json.dumps({**run(args.count, args.seed), "wall_s": round(time.perf_counter() - t, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
