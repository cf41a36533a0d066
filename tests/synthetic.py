"""Small images, DICOM series and models that tests build for themselves: nothing real, nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.demo import head_image, write_series


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


def write_patient_folders(root: Path, patients: int = 4, slices: int = 8, size: int = 48, seed: int = 0) -> Path:
    """The LGG layout: `<patient>/<slice>.png` with `<slice>_mask.png` (255 = tumour); every other slice has a disc."""
    rng = np.random.default_rng(seed)
    for p in range(patients):
        folder = root / f"P{p:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(slices):
            mask = np.zeros((size, size), np.uint8)
            tumour = None
            if i % 2:
                tumour = (int(rng.integers(size * 0.35, size * 0.65)), int(rng.integers(size * 0.35, size * 0.65)),
                          int(rng.integers(4, 8)))
                cv2.circle(mask, (tumour[1], tumour[0]), tumour[2], 255, -1)
            cv2.imwrite(str(folder / f"P{p:02d}_{i}.png"), head_image(size, size, tumour=tumour,
                                                                      seed=int(rng.integers(1 << 30))))
            cv2.imwrite(str(folder / f"P{p:02d}_{i}_mask.png"), mask)
    return root


def write_dicom_series(folder: Path, n: int = 6, size: int = 64, description: str = "T1 synthetic",
                       patient=("Synthetic^Patient", "SYN-0001"), shuffle: bool = True, tumour_slices=(),
                       extra: dict | None = None) -> list[Path]:
    return write_series(folder, n=n, size=size, description=description, patient=patient, reverse=shuffle,
                        tumour_slices=tumour_slices, extra=extra)


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
