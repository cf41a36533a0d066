"""Label-preserving transforms of preprocessed [0,1] images, for test-time augmentation.

They act after preprocessing, on what the model sees, so they cost no re-reading and are the same for every source.
"""

from __future__ import annotations

import cv2
import numpy as np

TTA_ORDER = ("identity", "hflip", "rotate+7", "rotate-7", "zoom1.08", "zoom0.93", "gamma0.85", "gamma1.15")
MAX_TTA = len(TTA_ORDER)  # the one limit on test-time views: the window, the command line and manifests follow it


def _affine(image: np.ndarray, angle: float, scale: float) -> np.ndarray:
    s = image.shape[0]
    matrix = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), angle, scale)
    return cv2.warpAffine(image, matrix, (s, s), flags=cv2.INTER_LINEAR, borderValue=0.0)


def apply_tta(images: np.ndarray, name: str) -> np.ndarray:
    """One named transform over a batch (N, S, S)."""
    if name == "identity":
        return images
    if name == "hflip":
        return images[:, :, ::-1].copy()
    if name.startswith("rotate"):
        angle = float(name[len("rotate") :])
        return np.stack([_affine(im, angle, 1.0) for im in images])
    if name.startswith("zoom"):
        scale = float(name[len("zoom") :])
        return np.stack([_affine(im, 0.0, scale) for im in images])
    if name.startswith("gamma"):
        return np.power(np.clip(images, 0.0, 1.0), float(name[len("gamma") :])).astype(np.float32)
    raise ValueError(f"unknown test-time augmentation {name!r}")
