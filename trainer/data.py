"""Labelled data in the common layouts, each root tagged as a source.

Layouts recognised (in this order): per-patient folders with `<slice>_mask.png` (label = mask not empty; LGG),
`Training/` + `Testing/` with glioma/meningioma/pituitary/notumor (collapsed to tumour / no tumour), `yes/` + `no/`
(either may be absent, as in Br35H's tumour slices), `<class>/` folders with a mapping, or one label for every image.
VGG Image Annotator JSON files in an `outlines/` folder give tumour outlines by file name: every region of an entry,
drawn as a polygon, an ellipse or a circle.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brainmri_desktop.core.io.dicom import DICOM_SUFFIXES
from brainmri_desktop.core.io.images import IMAGE_SUFFIXES

TUMOUR_NAMES = {"yes", "tumor", "tumour", "glioma", "meningioma", "pituitary", "1"}
NO_TUMOUR_NAMES = {"no", "notumor", "no_tumor", "notumour", "no_tumour", "normal", "healthy", "0"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 1 tumour, 0 no tumour
    source: str
    patient: str | None = None
    mask: Path | None = None
    outline: tuple[tuple, ...] | None = None  # VIA regions in image pixels (see _region); together they are the tumour


def _region(shape: dict) -> tuple | None:
    """One VIA region as a hashable tuple: ("polygon", xs, ys), ("ellipse", cx, cy, rx, ry, theta in radians) or
    ("circle", cx, cy, r); None for a shape that encloses nothing."""
    kind = shape.get("name")
    try:
        if kind == "polygon" and len(shape.get("all_points_x", [])) >= 3:
            xs, ys = tuple(map(float, shape["all_points_x"])), tuple(map(float, shape["all_points_y"]))
            return ("polygon", xs, ys) if len(xs) == len(ys) else None
        if kind == "ellipse" and float(shape["rx"]) > 0 and float(shape["ry"]) > 0:
            return ("ellipse", *(float(shape[k]) for k in ("cx", "cy", "rx", "ry")), float(shape.get("theta", 0.0)))
        if kind == "circle" and float(shape["r"]) > 0:
            return ("circle", float(shape["cx"]), float(shape["cy"]), float(shape["r"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def draw_outline(regions: tuple[tuple, ...], shape: tuple[int, int]) -> np.ndarray:
    """The union of the regions, filled, on an image grid of `shape` (bool)."""
    m = np.zeros(shape, np.uint8)
    for kind, *p in regions:
        if kind == "polygon":
            cv2.fillPoly(m, [np.round(np.stack(p, axis=1)).astype(np.int32)], 1)
        elif kind == "ellipse":
            # VIA rotates by theta radians in image coordinates (y down), as cv2's angle in degrees does.
            cv2.ellipse(m, ((p[0], p[1]), (2 * p[2], 2 * p[3]), math.degrees(p[4])), 1, -1)
        else:
            cv2.circle(m, (round(p[0]), round(p[1])), max(1, round(p[2])), 1, -1)
    return m > 0


def tumour_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray | None:
    """The sample's tumour region on its image grid, from its mask file or its outline; None when it has neither."""
    if sample.mask is not None:
        m = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
        return None if m is None or m.shape != shape else m > 0
    if sample.outline is not None:
        return draw_outline(sample.outline, shape)
    return None


class DataError(ValueError):
    """A data root that cannot be used as given."""


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | DICOM_SUFFIXES and not p.stem.endswith("_mask")
    )


def _outlines(root: Path) -> dict[str, tuple[tuple, ...]]:
    """Every region of every entry of the VIA files, by image file name (entries of one name across files add up)."""
    out: dict[str, tuple[tuple, ...]] = {}
    for file in sorted((root / "outlines").glob("*.json")) if (root / "outlines").is_dir() else []:
        try:
            entries = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DataError(f"{file}: not a VGG Image Annotator JSON file ({exc})") from None
        for entry in entries.values() if isinstance(entries, dict) else []:
            if not isinstance(entry, dict) or "filename" not in entry:
                continue
            regions = entry.get("regions", [])
            # VIA 1.x stored regions as a dict keyed "0", "1", ...; 2.x as a list.
            regions = regions.values() if isinstance(regions, dict) else regions
            shapes = (reg.get("shape_attributes", {}) if isinstance(reg, dict) else {} for reg in regions)
            found = tuple(r for r in map(_region, shapes) if r is not None)
            if found:
                out[entry["filename"]] = out.get(entry["filename"], ()) + found
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
