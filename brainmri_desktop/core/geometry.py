"""Where a pixel lies: in mm on the image plane and in the patient's coordinates (DICOM LPS), and distances in mm.

Pixel (x, y) is (column, row) with (0, 0) the centre of the first pixel, as DICOM counts them (PS3.3 C.7.6.2.1.1):
P = S + x * dc * X + y * dr * Y, with S the ImagePositionPatient, X and Y the row and column direction cosines of
ImageOrientationPatient, dr and dc the PixelSpacing (row spacing first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .io.slices import Slice


@dataclass(frozen=True)
class PixelGeometry:
    spacing: tuple[float, float] | None = None  # (row spacing, column spacing) in mm
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient: row direction, then column direction
    position: tuple[float, float, float] | None = None  # ImagePositionPatient of the first pixel, mm

    @classmethod
    def of(cls, slice_: Slice) -> PixelGeometry:
        spacing = slice_.pixel_spacing
        if spacing is not None and not all(math.isfinite(v) and v > 0 for v in spacing):
            spacing = None  # a zero or negative spacing in a header measures nothing
        acq = slice_.acquisition
        return cls(spacing, acq.orientation if acq else None, acq.image_position if acq else None)

    @property
    def has_patient(self) -> bool:
        return self.spacing is not None and self.orientation is not None and self.position is not None

    def plane_mm(self, x: float, y: float) -> tuple[float, float] | None:
        """Offset from the first pixel's centre along the rows and columns, in mm; None without a spacing."""
        if self.spacing is None:
            return None
        return x * self.spacing[1], y * self.spacing[0]

    def patient_mm(self, x: float, y: float) -> np.ndarray | None:
        """The point in patient coordinates (LPS, mm); None unless spacing, orientation and position are all known."""
        if not self.has_patient:
            return None
        cosines = np.asarray(self.orientation, dtype=float)
        return (np.asarray(self.position, dtype=float) + x * self.spacing[1] * cosines[:3]
                + y * self.spacing[0] * cosines[3:])

    def distance(self, start: tuple[float, float], end: tuple[float, float]) -> Distance:
        """Length of the segment between two pixel positions: mm when the spacing is known, pixels otherwise."""
        dx, dy = end[0] - start[0], end[1] - start[1]
        if self.spacing is None:
            return Distance(math.hypot(dx, dy), "px")
        return Distance(math.hypot(dx * self.spacing[1], dy * self.spacing[0]), "mm")


@dataclass(frozen=True)
class Distance:
    value: float
    unit: str  # "mm", or "px" when the image carries no pixel spacing

    def __str__(self) -> str:
        if self.unit == "mm":
            return f"{self.value:.1f} mm"
        return f"{self.value:.1f} px (no pixel spacing)"


_SIDES = (("R", "L"), ("A", "P"), ("I", "S"))  # negative, positive side of each LPS axis
# A direction component below this share of the largest is left out of a label: an axial series tilted 10 degrees
# along the AC-PC line still reads "A" at the top, not "AS".
_LABEL_SHARE = 0.25


def direction_label(vector) -> str:
    """Letters for a direction in patient space, strongest first: (1, 0, 0) is "L", (0.7, -0.7, 0) "LA" or "AL"."""
    v = np.asarray(vector, dtype=float)
    biggest = float(np.abs(v).max()) if v.size else 0.0
    if biggest == 0:
        return ""
    order = sorted(range(3), key=lambda i: -abs(v[i]))
    return "".join(_SIDES[i][int(v[i] > 0)] for i in order if abs(v[i]) >= _LABEL_SHARE * biggest)


def edge_labels(orientation, right: tuple[float, float], down: tuple[float, float]) -> dict[str, str]:
    """The patient side at each edge of the screen. `right` and `down` are the image directions (column, row) that
    point to the screen's right and bottom, after any flip or turn of the display."""
    cosines = np.asarray(orientation, dtype=float)

    def towards(d):
        return d[0] * cosines[:3] + d[1] * cosines[3:]

    r, d = towards(right), towards(down)
    return {"left": direction_label(-r), "right": direction_label(r), "top": direction_label(-d),
            "bottom": direction_label(d)}


def lps_text(point: np.ndarray) -> str:
    """Patient coordinates the way viewers print them: R/L, A/P, I/S with the distance from the origin in mm."""
    parts = []
    for value, (neg, pos) in zip(point, (("R", "L"), ("A", "P"), ("I", "S"))):
        parts.append(f"{pos if value >= 0 else neg} {abs(float(value)):.1f}")
    return " ".join(parts) + " mm"


def readout(slice_: Slice, x: int, y: int) -> str:
    """The status-bar text for the pixel under the cursor: pixel, value, mm on the plane, patient coordinates."""
    text = f"x {x}, y {y}: value {float(slice_.values()[y, x]):.1f}"
    geometry = PixelGeometry.of(slice_)
    plane = geometry.plane_mm(x, y)
    if plane is None:
        return text + " (no pixel spacing: pixel coordinates only)"
    text += f" | {plane[0]:.1f}, {plane[1]:.1f} mm"
    point = geometry.patient_mm(x, y)
    return text + (f" | {lps_text(point)}" if point is not None else " (no patient position in the header)")
