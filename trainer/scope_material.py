"""Out-of-scope test material for the scope guard, built on this machine and never committed.

`python -m trainer.scope_material OUT --lgg ../shared/data/lgg-flair` writes one folder per kind:
- `lgg-sagittal/`, `lgg-coronal/`: each LGG patient's axial FLAIR slices stacked into a volume and resliced through the
  head's centre and 20 pixels either side (file names start with the patient, so an evaluation can skip the patients
  a model trained on);
- `pydicom-mr/`: the MR files shipped with pydicom and pydicom-data (sagittal, secondary captures, MPR, enhanced MR);
- `other-modality/`: their CT, ultrasound, radiography, nuclear medicine and secondary-capture images;
- `patterns/`: images without anatomy (stripes at several angles and periods, checkerboards, noise, smooth blobs,
  gradients, a plain disc);
- `blank/`: empty, constant and near-empty frames (a dot, a line of text-like marks, faint noise).
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

KINDS = ("lgg-sagittal", "lgg-coronal", "pydicom-mr", "other-modality", "patterns", "blank")
OFFSETS = (-20, 0, 20)


def patient_volumes(lgg: Path) -> dict[str, np.ndarray]:
    """{patient: (slices, H, W) uint8}, slices in their numbered order."""
    out = {}
    for folder in sorted(p for p in lgg.iterdir() if p.is_dir()):
        files = [f for f in folder.glob("*.png") if not f.stem.endswith("_mask")]
        numbered = sorted(files, key=lambda f: int(re.findall(r"_(\d+)$", f.stem)[0]))
        stack = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in numbered]
        if len(stack) >= 8 and all(s is not None and s.shape == stack[0].shape for s in stack):
            out[folder.name] = np.stack(stack)
    return out


def reslice(volume: np.ndarray, plane: str, offsets: tuple[int, ...] = OFFSETS) -> list[np.ndarray]:
    """Sagittal or coronal cuts `offsets` pixels from the head's centre, head up, as square 8-bit images (the
    through-plane axis stretched to the in-plane size: the slices' spacing is not recorded)."""
    axis = 2 if plane == "sagittal" else 1
    profile = volume.astype(np.float32).mean(axis=(0, 3 - axis))
    centre = int(round(np.average(np.arange(profile.size), weights=profile + 1e-6)))
    size = volume.shape[1]
    cuts = []
    for offset in offsets:
        k = int(np.clip(centre + offset, 0, volume.shape[axis] - 1))
        cut = volume[:, :, k] if axis == 2 else volume[:, k, :]
        cuts.append(cv2.resize(np.flipud(cut), (size, size), interpolation=cv2.INTER_LINEAR))
    return cuts


def _patterns(rng: np.random.Generator, size: int = 256) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = {}
    for period in (4, 8, 16, 32):
        for angle in (0, 45, 90, 135):
            t = np.deg2rad(angle)
            wave = np.sin(2 * np.pi * (xx * np.cos(t) + yy * np.sin(t)) / period)
            out[f"stripes_p{period}_a{angle}"] = (wave > 0).astype(np.float32)
            out[f"sine_p{period}_a{angle}"] = (wave + 1) / 2
    for cell in (8, 16, 32, 64):
        out[f"checker_{cell}"] = (((yy // cell) + (xx // cell)) % 2).astype(np.float32)
    for i in range(6):
        out[f"noise_uniform_{i}"] = rng.random((size, size), dtype=np.float32)
        out[f"noise_blobs_{i}"] = cv2.GaussianBlur(rng.random((size, size), dtype=np.float32), (0, 0), 2.0 + 3 * i)
    out["gradient_x"], out["gradient_y"] = xx / size, yy / size
    out["gradient_radial"] = np.hypot(xx - size / 2, yy - size / 2) / size
    disc = np.zeros((size, size), np.float32)
    cv2.circle(disc, (size // 2, size // 2), size // 3, 1.0, -1)
    out["disc_plain"] = disc
    out["disc_noisy"] = np.clip(disc * 0.7 + 0.3 * rng.random((size, size), dtype=np.float32) * disc, 0, 1)
    return {k: (np.clip(v, 0, 1) * 255).astype(np.uint8) for k, v in out.items()}


def _blanks(rng: np.random.Generator, size: int = 256) -> dict[str, np.ndarray]:
    out = {"zeros": np.zeros((size, size), np.uint8), "constant_grey": np.full((size, size), 128, np.uint8),
           "constant_white": np.full((size, size), 255, np.uint8)}
    for i, radius in enumerate((1, 2, 4, 6)):
        dot = np.zeros((size, size), np.uint8)
        cv2.circle(dot, (int(rng.integers(20, size - 20)), int(rng.integers(20, size - 20))), radius, 255, -1)
        out[f"dot_{i}"] = dot
    for i in range(4):
        text = np.zeros((size, size), np.uint8)
        cv2.putText(text, f"R {i}  L", (10, 20 + 50 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
        out[f"text_{i}"] = text
        out[f"faint_noise_{i}"] = (rng.random((size, size)) * (2 + 2 * i)).astype(np.uint8)
    return out


def _pydicom_files() -> dict[str, list[Path]]:
    """pydicom's and pydicom-data's image files by kind; only those whose first frame the core reads."""
    import pydicom
    from pydicom.data import get_testdata_files

    from brainmri_desktop.core.errors import BrainMRIError
    from brainmri_desktop.core.io.study import read_file

    kinds: dict[str, list[Path]] = defaultdict(list)
    for name in sorted(set(get_testdata_files("*.dcm"))):
        path = Path(name)
        try:
            modality = str(pydicom.dcmread(path, stop_before_pixels=True).get("Modality", "")).upper()
            read_file(path)
        except (BrainMRIError, OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError):
            continue
        kinds["pydicom-mr" if modality == "MR" else "other-modality"].append(path)
    return kinds


def build(out: Path, lgg: Path | None, blank_examples: tuple[Path, ...] = (), seed: int = 0) -> dict[str, int]:
    """Write every kind into `out` (replacing what is there); returns the number of files per kind."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    for kind in KINDS:
        shutil.rmtree(out / kind, ignore_errors=True)
        (out / kind).mkdir(parents=True)
    if lgg is not None:
        for patient, volume in patient_volumes(Path(lgg)).items():
            for plane in ("sagittal", "coronal"):
                for i, cut in enumerate(reslice(volume, plane)):
                    cv2.imwrite(str(out / f"lgg-{plane}" / f"{patient}__{plane}{i}.png"), cut)
    for kind, files in _pydicom_files().items():
        for path in files:
            shutil.copyfile(path, out / kind / path.name)
    for name, image in _patterns(rng).items():
        cv2.imwrite(str(out / "patterns" / f"{name}.png"), image)
    for name, image in _blanks(rng).items():
        cv2.imwrite(str(out / "blank" / f"{name}.png"), image)
    for path in blank_examples:
        shutil.copyfile(path, out / "blank" / Path(path).name.replace(" ", "_"))
    return {kind: sum(1 for _ in (out / kind).iterdir()) for kind in KINDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--lgg", type=Path, help="the lgg-flair folder (patient folders of axial slices)")
    parser.add_argument("--blank-example", type=Path, action="append", default=[],
                        help="a real near-empty image to add to blank/ (repeatable)")
    args = parser.parse_args(argv)
    for kind, n in build(args.out, args.lgg, tuple(args.blank_example)).items():
        print(f"{kind}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
