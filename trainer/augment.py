"""Training augmentation in four strengths, on preprocessed uint8 images.

'heavy' adds what another scanner or sequence would change: gamma, contrast, a smooth bias field, blur, noise and JPEG
artefacts, besides geometric distortions. Sources in the training data differ in exactly these ways, and a model that
has seen them varied cannot use them to tell the sources (and so the labels) apart.

'domain' adds, on top of 'heavy', a random intensity curve (sometimes not monotone) over the head: tissue keeps its
shape but not its brightness, as between MRI sequences. The model has to find a tumour by its difference from the
tissue around it rather than by how bright it is in the sequences it was trained on (domain randomisation, as in
BigAug and SynthSeg). An ablation, not the bundled recipe: trained without LGG, a CNN with it was no better on LGG's
mid-brain slices than one with 'heavy' (both near chance); it only learnt the sources it saw more slowly.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import numpy as np

STRENGTHS = ("none", "moderate", "heavy", "domain")


def bias_field(image: np.ndarray, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """Multiply by a smooth random field, as coil inhomogeneity does."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h - 0.5, xx / w - 0.5
    c = rng.uniform(-strength, strength, size=5)
    field = 1 + c[0] * xx + c[1] * yy + c[2] * xx * yy + c[3] * xx**2 + c[4] * yy**2
    return np.clip(image.astype(np.float32) * field, 0, 255).astype(np.uint8)


def random_intensity_curve(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map the head's grey levels through a random piecewise-linear curve; the background (0) stays black."""
    knots = int(rng.integers(3, 7))
    xs = np.concatenate(([0.0], np.sort(rng.uniform(1, 254, knots)), [255.0]))
    ys = rng.uniform(0, 255, knots + 2)
    if rng.random() < 0.5:
        ys = np.sort(ys)
    ys[0] = max(ys[0], 1.0)  # dark tissue must not vanish into the background
    lut = np.interp(np.arange(256), xs, ys).astype(np.uint8)
    lut[0] = 0
    return lut[image]


Augmenter = Callable[[np.ndarray, np.ndarray | None, np.random.Generator], tuple[np.ndarray, np.ndarray | None]]


def build_augmenter(strength: str) -> Augmenter | None:
    """A function (image, tumour mask or None, rng) -> both transformed; the mask follows every geometric change.
    Randomness comes from the caller's rng alone (see `_Augment`), so there is no seed here."""
    if strength not in STRENGTHS:
        raise ValueError(f"augmentation strength must be one of {STRENGTHS}")
    if strength == "none":
        return None
    # Unless told not to, importing albumentations asks PyPI for its latest version (a 2 s timeout): in every batch
    # worker, and on machines with no network. The trainer makes no network calls.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    geometric = [
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-15, 15), translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), p=0.8, border_mode=0),
    ]
    intensity = [
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.6),
        A.RandomGamma(gamma_limit=(75, 135), p=0.5),
    ]
    heavy = [
        A.CLAHE(clip_limit=(1, 3), p=0.15),
        A.OneOf([A.ElasticTransform(alpha=20, sigma=5), A.GridDistortion(distort_limit=0.2)], p=0.25),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.3),
        A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        A.ImageCompression(quality_range=(35, 95), p=0.3),
    ]
    pipeline = A.Compose(geometric + intensity + (heavy if strength in ("heavy", "domain") else []))
    return _Augment(pipeline, strength)


class _Augment:
    """A class, not a closure, so that it pickles into the processes that build the batches. Every call hands the
    pipeline the caller's `rng`, so an image's augmentation depends on that alone: not on what the pipeline augmented
    before, nor on which process runs it."""

    def __init__(self, pipeline, strength: str):
        self.pipeline, self.strength = pipeline, strength

    def __call__(self, image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
        self.pipeline.set_random_state(rng, random.Random(int(rng.integers(2**63))))
        # What preprocessing blanked (outside the head) moves with the head and stays blank: brightness and noise
        # would otherwise light it, which no input at inference has, and a cell-scored model reads the head's cells
        # off the blank.
        head = (image.max(axis=-1) if image.ndim == 3 else image) > 0
        targets = {"image": image, "masks": [head.astype(np.uint8)]}
        if mask is not None:
            targets["mask"] = mask
        out = self.pipeline(**targets)
        image = out["image"]
        if self.strength in ("heavy", "domain") and rng.random() < 0.4:
            image = bias_field(image, rng)
        if self.strength == "domain" and rng.random() < 0.5:
            image = random_intensity_curve(image, rng)
        blank = np.asarray(out["masks"][0]) == 0
        image = np.where(blank[..., None] if image.ndim == 3 else blank, 0, image).astype(np.uint8)
        return image, out.get("mask")
