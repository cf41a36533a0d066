"""Small images, DICOM series and models that tests build for themselves: nothing real, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import cv2
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
    img = img * scale
    return img.astype(dtype)


def write_labelled_folder(root: Path, n_per_class: int = 12, size: int = 64, seed: int = 0) -> Path:
    """A `yes/` + `no/` folder: tumour images carry a bright disc at a random place inside the head."""
    rng = np.random.default_rng(seed)
    for label in ("yes", "no"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            tumour = None
            if label == "yes":
                tumour = (int(rng.integers(size * 0.35, size * 0.65)), int(rng.integers(size * 0.35, size * 0.65)),
                          int(rng.integers(4, 8)))
            img = head_image(size, size, tumour=tumour, seed=int(rng.integers(1 << 30)))
            cv2.imwrite(str(root / label / f"{label}{i}.png"), img)
    return root


def write_dicom_series(folder: Path, n: int = 6, size: int = 64, series_uid: str | None = None,
                       description: str = "T1 synthetic", patient=("Synthetic^Patient", "SYN-0001"),
                       shuffle: bool = True, tumour_slices=(), extra: dict | None = None) -> list[Path]:
    """A small MR series with positions along z; files written in a scrambled order to test sorting."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    order = list(range(n))
    if shuffle:
        order = order[::-1]
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
        ds.Modality, ds.SeriesDescription = "MR", description
        ds.PatientName, ds.PatientID = patient
        ds.PatientBirthDate, ds.AccessionNumber = "19000101", "ACC-SYN"
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, float(i * 5)]
        ds.PixelSpacing = [1.0, 1.0]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        tumour = (size // 2, size // 2, size // 10) if i in tumour_slices else None
        ds.PixelData = head_image(size, size, tumour=tumour, seed=i, dtype=np.uint16, scale=8).tobytes()
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def bright_spot_model(threshold: float = 0.8):
    """A model whose logit depends only on pixels brighter than `threshold` (after preprocessing): its Grad-CAM must
    light up exactly where those pixels are."""
    import keras

    inputs = keras.Input((None, None, 3), name="image")
    feat = keras.layers.Conv2D(1, 1, activation="relu", name="feat")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(feat)
    logit = keras.layers.Dense(1, name="logit")(pooled)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="prob")(logit))
    model.get_layer("feat").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32), np.array([-threshold], np.float32)])
    model.get_layer("logit").set_weights([np.array([[50.0]], np.float32), np.array([-1.0], np.float32)])
    return model
