"""Labelled data in the common layouts, each root tagged as a source.

Layouts recognised (in this order): per-patient folders with `<slice>_mask.png` (label = mask not empty; LGG),
`Training/` + `Testing/` with glioma/meningioma/pituitary/notumor (collapsed to tumour / no tumour), `yes/` + `no/`
(either may be absent, as in Br35H's tumour slices), `<class>/` folders with a mapping, or one label for every image.
VGG Image Annotator JSON files in an `outlines/` folder give tumour polygons by file name.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.io.images import IMAGE_SUFFIXES

TUMOUR_NAMES = {"yes", "tumor", "tumour", "glioma", "meningioma", "pituitary", "1"}
NO_TUMOUR_NAMES = {"no", "notumor", "no_tumor", "notumour", "no_tumour", "normal", "healthy", "0"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 tumour, 0 no tumour
    source: str
    patient: str | None = None
    mask: Path | None = None
    outline: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # polygon xs, ys in image pixels


def tumour_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray | None:
    """The sample's tumour region on its image grid, from its mask file or its outline; None when it has neither."""
    if sample.mask is not None:
        m = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
        return None if m is None or m.shape != shape else m > 0
    if sample.outline is not None:
        m = np.zeros(shape, np.uint8)
        pts = np.stack([np.asarray(sample.outline[0]), np.asarray(sample.outline[1])], axis=1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
        return m > 0
    return None


class DataError(ValueError):
    """A data root that cannot be used as given."""


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | DICOM_SUFFIXES and not p.stem.endswith("_mask")
    )


def _outlines(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for file in sorted((root / "outlines").glob("*.json")) if (root / "outlines").is_dir() else []:
        for entry in json.loads(file.read_text(encoding="utf-8")).values():
            for region in entry.get("regions", []):
                shape = region.get("shape_attributes", {})
                if shape.get("name") == "polygon" and len(shape.get("all_points_x", [])) >= 3:
                    out[entry["filename"]] = (tuple(shape["all_points_x"]), tuple(shape["all_points_y"]))
                    break
    return out


def _label_for(name: str, class_map: dict[str, int] | None) -> int | None:
    if class_map and name in class_map:
        return int(class_map[name])
    low = name.lower()
    if low in TUMOUR_NAMES:
        return 1
    if low in NO_TUMOUR_NAMES:
        return 0
    return None


def load_source(
    root: Path, source: str | None = None, label: int | None = None, class_map: dict[str, int] | None = None
) -> list[Sample]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    source = source or root.name
    if label is not None:
        return [Sample(p, int(label), source) for p in _images(root)]
    masks = sorted(root.glob("*/*_mask.png"))
    if masks:
        samples = []
        for mask in masks:
            image = mask.with_name(mask.name.replace("_mask", ""))
            pixels = cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE)
            if image.exists() and pixels is not None:
                samples.append(Sample(image, int(pixels.max() > 0), source, patient=mask.parent.name, mask=mask))
        return samples
    outlines = _outlines(root)
    parts = [root / p for p in ("Training", "Testing") if (root / p).is_dir()] or [root]
    samples = []
    for part in parts:
        for folder in sorted(p for p in part.iterdir() if p.is_dir() and p.name != "outlines"):
            lab = _label_for(folder.name, class_map)
            if lab is None:
                raise DataError(f"{folder}: no label for class folder {folder.name!r} (give a class mapping)")
            samples += [Sample(p, lab, source, outline=outlines.get(p.name)) for p in _images(folder)]
    if not samples:
        raise DataError(f"{root}: no labelled images found")
    return samples


def summary(samples: list[Sample]) -> dict:
    by_source: dict[str, dict] = {}
    for s in samples:
        d = by_source.setdefault(s.source, {"images": 0, "tumour": 0, "no_tumour": 0, "patients": set()})
        d["images"] += 1
        d["tumour" if s.label == 1 else "no_tumour"] += 1
        if s.patient:
            d["patients"].add(s.patient)
    for d in by_source.values():
        d["patients"] = len(d["patients"])
    return {"images": len(samples), "by_source": by_source,
            "labels": dict(Counter("tumour" if s.label == 1 else "no_tumour" for s in samples))}
