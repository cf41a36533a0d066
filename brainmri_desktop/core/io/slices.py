"""The Slice type: one 2-D greyscale image with its geometry and metadata, the patient's identity kept apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..intensity import robust_range


@dataclass(frozen=True)
class PatientInfo:
    """Identifying fields. Their repr hides them so that a slice logged or printed by mistake leaks nothing."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    accession: str = ""

    def __repr__(self) -> str:
        return "PatientInfo(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class SeriesInfo:
    uid: str
    description: str = ""
    modality: str = ""
    study_description: str = ""
    study_date: str = ""
    study_uid: str = ""
    number: int | None = None  # SeriesNumber, for ordering series the way the scanner did


@dataclass(frozen=True)
class Acquisition:
    """How the slice was made, as far as its headers say (nothing identifying). The scope guard and the patient
    coordinates read it; inputs without headers (PNG, JPEG) have none."""

    orientation: tuple[float, float, float, float, float, float] | None = None  # ImageOrientationPatient
    image_position: tuple[float, float, float] | None = None  # ImagePositionPatient of the first pixel, mm
    image_type: tuple[str, ...] = ()  # ImageType values, upper case (ORIGINAL/DERIVED, PRIMARY, DIFFUSION, ...)
    b_value: float | None = None  # DiffusionBValue or a maker's private equivalent
    scanning_sequence: tuple[str, ...] = ()  # ScanningSequence (SE, GR, IR, EP, ...)
    sequence_variant: tuple[str, ...] = ()
    sequence_name: str = ""
    mr_acquisition_type: str = ""  # 2D / 3D
    sop_class_uid: str = ""
    slice_thickness: float | None = None


@dataclass(eq=False)
class Slice:
    """Pixels as stored (after the modality LUT and MONOCHROME1 inversion), plus where they came from.

    The array keeps its stored integer type where it can, so a study is held once at its own size; `values()` gives
    the float32 view that preprocessing and display use.
    """

    path: Path
    pixels: np.ndarray
    frame: int = 0
    window: tuple[float, float] | None = None  # (centre, width) from the file, in `values()` units
    position: float | None = None  # along the slice normal, in mm
    instance: int | None = None
    pixel_spacing: tuple[float, float] | None = None
    series: SeriesInfo | None = None
    acquisition: Acquisition | None = None
    patient: PatientInfo = field(default_factory=PatientInfo, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    @property
    def label(self) -> str:
        """A short name for lists and CSV rows: the file name, with the frame when the file holds several."""
        return f"{self.path.name}[{self.frame}]" if self.frame else self.path.name

    def values(self) -> np.ndarray:
        return self.pixels.astype(np.float32, copy=False)

    def display_window(self) -> tuple[float, float]:
        """(centre, width) for showing the slice: the file's own window, else its robust range (core.intensity)."""
        if self.window:
            return self.window
        lo, hi = robust_range(self.values())
        return (float(lo + hi) / 2, max(float(hi - lo), 1e-6))

    def display_image(self, window: tuple[float, float] | None = None) -> np.ndarray:
        """The slice scaled to [0, 1] through a window (its display window by default)."""
        centre, width = window or self.display_window()
        return np.clip((self.values() - (centre - width / 2)) / max(width, 1e-6), 0, 1)
