"""A small synthetic DICOM series the application writes for itself, so a new user sees the whole workflow.

It holds no patient data: the identity fields say SYNTHETIC, and the 'tumours' are bright discs on drawn ellipses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def head_image(h: int = 96, w: int = 96, centre=None, axes=None, tumour=None, seed: int = 0,
               dtype=np.uint8, scale: float = 1.0) -> np.ndarray:
    """An ellipse of textured 'tissue' on a dark background; `tumour` = (y, x, r) adds a bright disc."""
    rng = np.random.default_rng(seed)
    cy, cx = centre or (h // 2, w // 2)
    ay, ax = axes or (int(h * 0.38), int(w * 0.32))
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1
    img = np.where(inside, rng.uniform(80, 140, (h, w)), rng.uniform(0, 6, (h, w)))
    if tumour is not None:
        ty, tx, r = tumour
        img[(yy - ty) ** 2 + (xx - tx) ** 2 <= r * r] = 250
    return (img * scale).astype(dtype)


def reference_slices() -> list[np.ndarray]:
    """Eight synthetic heads of different shapes, four with a bright disc: the slices a package's ONNX graphs are
    checked on against Keras when they are exported, and against the probabilities recorded then by the self-test."""
    return [head_image(160 + 8 * i, 140 + 6 * i, tumour=(60 + 5 * i, 55 + 4 * i, 7 + i) if i % 2 else None, seed=i)
            for i in range(8)]


def write_series(folder: Path, n: int = 12, size: int = 128, series_uid: str | None = None,
                 description: str = "SYNTHETIC demo series (no patient data)",
                 patient=("SYNTHETIC^DEMO", "SYNTHETIC"), reverse: bool = True, tumour_slices=(5, 6, 7),
                 extra: dict | None = None) -> list[Path]:
    """An MR series with positions along z, written in reverse order so that loading must sort it."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    order = list(range(n))[::-1] if reverse else list(range(n))
    paths = []
    for k, i in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"img{k:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.SeriesDescription, ds.StudyDescription = "MR", description, "SYNTHETIC"
        ds.PatientName, ds.PatientID = patient
        ds.PatientBirthDate, ds.AccessionNumber = "19000101", "SYNTHETIC"
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, float(i * 5)]
        ds.PixelSpacing = [1.0, 1.0]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.WindowCenter, ds.WindowWidth = 1000, 2200
        tumour = (int(size * 0.42), int(size * 0.58), max(3, size // 10)) if i in tumour_slices else None
        ds.PixelData = head_image(size, size, tumour=tumour, seed=i, dtype=np.uint16, scale=8).tobytes()
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def demo_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("BrainMRI", appauthor=False) / "demo-study"


def ensure_demo_study() -> Path:
    folder = demo_dir()
    if not any(folder.glob("*.dcm")):
        write_series(folder)
    return folder
