"""The one preprocessing contract shared by training and inference.

A slice becomes model input in fixed steps: window (when the file has one), head mask, crop to the head with the
aspect ratio kept (square padding, never stretching), intensity normalisation by percentiles inside the head, resize,
then the model's own normalisation. Training sources differ in framing, contrast and JPEG history; normalising inside
the head and blanking what lies outside it (film borders, burnt-in text) keeps a model from learning the source.
Every step is recorded in a `CropGeometry`, so a Grad-CAM map can be put back on the slice exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from .intensity import robust_range
from .io.slices import Slice

MODEL_NORMALISATIONS = ("unit", "resnet50")
INTENSITY_SCALES = ("percentiles", "median")
_RESNET_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_MASK_SIZE = 256  # the head mask is found on a copy no larger than this; it needs shape, not detail
# A slice whose head mask covers less than this share holds no head (blank, a localiser edge, noise): it is normalised
# as a whole, and the triage gives it a no-head verdict rather than a decision.
NO_HEAD_FRACTION = 0.01


def has_head(head_fraction: float) -> bool:
    return head_fraction >= NO_HEAD_FRACTION


@dataclass(frozen=True)
class PreprocessSpec:
    input_size: int = 224
    use_window: bool = True
    head_crop: bool = True
    crop_margin: float = 0.04
    blank_outside_head: bool = True
    # Share of the head's diameter stripped from its border (scalp and skull) before normalising and blanking. Scalp
    # fat is the brightest tissue on T1 and FLAIR: Grad-CAM peaks of models trained without this sat on it.
    strip_rim: float = 0.0
    percentiles: tuple[float, float] = (1.0, 99.0)
    # "percentiles" maps the two percentiles of the head to 0 and 1. "median" maps the low percentile to 0 and the
    # head's median to 0.5: a large bright lesion holds the top percentile and would darken the normal tissue under
    # "percentiles", while the median stays with the normal tissue.
    intensity_scale: str = "percentiles"
    clahe: bool = False
    model_normalisation: str = "unit"

    def __post_init__(self) -> None:
        if self.model_normalisation not in MODEL_NORMALISATIONS:
            raise ValueError(f"model_normalisation must be one of {MODEL_NORMALISATIONS}")
        if not 8 <= self.input_size <= 1024:
            raise ValueError("input_size must be between 8 and 1024")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        if self.intensity_scale not in INTENSITY_SCALES:
            raise ValueError(f"intensity_scale must be one of {INTENSITY_SCALES}")
        if not 0 <= self.strip_rim <= 0.2:
            raise ValueError("strip_rim must be between 0 and 0.2")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["percentiles"] = list(self.percentiles)
        d["steps"] = [
            "window" if self.use_window else None,
            "head_mask(otsu, largest component, convex hull)",
            f"crop_to_head(margin={self.crop_margin}, pad_to_square)" if self.head_crop else "pad_to_square",
            f"strip_rim({self.strip_rim} of the head's diameter)" if self.strip_rim else None,
            "blank_outside_head" if self.blank_outside_head else None,
            f"percentile_normalise_inside_head{tuple(self.percentiles)}" if self.intensity_scale == "percentiles"
            else f"median_normalise_inside_head(low={self.percentiles[0]}, median->0.5)",
            "clahe(clip=2.0, grid=8)" if self.clahe else None,
            f"resize({self.input_size}, area)",
            "grey_to_3_channels",
            f"model_normalisation({self.model_normalisation})",
        ]
        d["steps"] = [s for s in d["steps"] if s]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "percentiles" in kwargs:
            kwargs["percentiles"] = tuple(float(p) for p in kwargs["percentiles"])
        return cls(**kwargs)


@dataclass(frozen=True)
class CropGeometry:
    """Where the model input came from: crop box in the slice, square padding, and the two sizes."""

    source_shape: tuple[int, int]
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 in slice pixels
    pad: tuple[int, int]  # top, left inside the padded square
    side: int  # side of the padded square, in slice pixels
    size: int  # model input side

    def to_source(self, heat: np.ndarray) -> np.ndarray:
        """A model-input-sized map put back on the slice grid; zero outside the crop."""
        y0, y1, x0, x1 = self.box
        top, left = self.pad
        square = cv2.resize(heat.astype(np.float32), (self.side, self.side), interpolation=cv2.INTER_LINEAR)
        out = np.zeros(self.source_shape, dtype=np.float32)
        out[y0:y1, x0:x1] = square[top : top + (y1 - y0), left : left + (x1 - x0)]
        return out

    def to_input(self, values: np.ndarray) -> np.ndarray:
        """A map on the slice grid (a tumour mask, say) cut and scaled as the image was: the model-input grid."""
        y0, y1, x0, x1 = self.box
        top, left = self.pad
        square = np.zeros((self.side, self.side), dtype=np.float32)
        square[top : top + (y1 - y0), left : left + (x1 - x0)] = np.asarray(values, np.float32)[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if self.side > self.size else cv2.INTER_LINEAR
        return cv2.resize(square, (self.size, self.size), interpolation=interp)


@dataclass(frozen=True)
class Preprocessed:
    image: np.ndarray  # input_size x input_size, float32 in [0, 1]: what the model sees before its normalisation
    geometry: CropGeometry
    head_fraction: float  # share of the slice inside the head mask; near 0 for slices with no head


def _unit_scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not np.isfinite([lo, hi]).all() or hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def head_mask(unit: np.ndarray) -> np.ndarray:
    """Boolean mask of the head: Otsu on a smoothed small copy, the convex hull of the largest component."""
    h, w = unit.shape
    scale = min(1.0, _MASK_SIZE / max(h, w))
    small = cv2.resize(unit, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    u8 = cv2.GaussianBlur((small * 255).astype(np.uint8), (5, 5), 0)
    if int(u8.max()) - int(u8.min()) < 8:
        return np.zeros((h, w), dtype=bool)
    otsu, binary = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # Bright lesions or fat pull Otsu up and cut the faint rim of the head; half the median of the foreground keeps it.
    thr = min(otsu, 0.5 * float(np.median(u8[binary > 0]))) if (binary > 0).any() else otsu
    binary = (u8 > max(thr, 4)).astype(np.uint8) * 255
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _c = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return np.zeros((h, w), dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # The convex hull of the largest component: a skull ring broken by a dark region, or a brain with dark ventricles,
    # still gives the whole head rather than a rim.
    contours, _h = cv2.findContours((labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    mask = np.zeros_like(binary)
    cv2.fillPoly(mask, [cv2.convexHull(np.vstack(contours))], 255)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def _strip_rim(mask: np.ndarray, share: float) -> np.ndarray:
    """The head mask eroded by `share` of its equivalent diameter; the whole mask when that would leave too little."""
    if share <= 0:
        return mask
    radius = max(1, round(share * 2 * np.sqrt(mask.sum() / np.pi)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    inner = cv2.erode(mask.astype(np.uint8), kernel) > 0
    return inner if inner.sum() >= 0.2 * mask.sum() else mask


def _box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    m = int(round(margin * max(y1 - y0, x1 - x0)))
    return max(0, y0 - m), min(h, y1 + m), max(0, x0 - m), min(w, x1 + m)


def find_head(values: np.ndarray) -> np.ndarray:
    """The head in a slice's own values: the head mask of the slice scaled by its robust range, so that a few hot
    pixels (burnt-in text, a flow artefact) do not squash the head into the dark end."""
    return head_mask(_unit_scale(values, *robust_range(values)))


def preprocess_values(
    values: np.ndarray, window: tuple[float, float] | None, spec: PreprocessSpec
) -> Preprocessed:
    """The contract itself, on a 2-D array of pixel values."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2 or min(values.shape) < 2:
        raise ValueError(f"expected a 2-D slice, got shape {values.shape}")
    if spec.use_window and window is not None:
        centre, width = window
        values = np.clip(values, centre - width / 2, centre + width / 2)
    mask = find_head(values)
    head_fraction = float(mask.mean())
    head = has_head(head_fraction)
    if not head:
        mask = np.ones_like(mask)
    tissue = _strip_rim(mask, spec.strip_rim) if head else mask
    lo, hi = np.percentile(values[tissue], spec.percentiles)
    if spec.intensity_scale == "median":
        hi = lo + 2 * (float(np.median(values[tissue])) - lo)
    unit = _unit_scale(values, float(lo), float(hi))
    if spec.blank_outside_head and head:
        kept = tissue if spec.strip_rim else cv2.dilate(
            mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
        unit = np.where(kept, unit, 0.0).astype(np.float32)
    h, w = values.shape
    y0, y1, x0, x1 = _box(mask, spec.crop_margin) if spec.head_crop else (0, h, 0, w)
    ch, cw = y1 - y0, x1 - x0
    side = max(ch, cw)
    top, left = (side - ch) // 2, (side - cw) // 2
    square = np.zeros((side, side), dtype=np.float32)
    square[top : top + ch, left : left + cw] = unit[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if side > spec.input_size else cv2.INTER_LINEAR
    image = cv2.resize(square, (spec.input_size, spec.input_size), interpolation=interp)
    if spec.clahe:
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        image = clahe.apply((image * 255).astype(np.uint8)).astype(np.float32) / 255.0
    geometry = CropGeometry((h, w), (y0, y1, x0, x1), (top, left), side, spec.input_size)
    return Preprocessed(np.clip(image, 0.0, 1.0).astype(np.float32), geometry, head_fraction)


def preprocess_slice(slice_: Slice, spec: PreprocessSpec) -> Preprocessed:
    return preprocess_values(slice_.values(), slice_.window, spec)


def to_model_input(images: np.ndarray, normalisation: str) -> np.ndarray:
    """A batch of [0,1] greyscale images (N, S, S) as the model's 3-channel input (N, S, S, 3)."""
    x = np.repeat(np.asarray(images, dtype=np.float32)[..., None], 3, axis=-1)
    if normalisation == "unit":
        return x
    if normalisation == "resnet50":
        # Keras's ResNet50 `preprocess_input` ("caffe" mode): 0-255, RGB to BGR, ImageNet channel means removed.
        return x * 255.0 - _RESNET_BGR_MEAN
    raise ValueError(f"unknown model normalisation {normalisation!r}")
