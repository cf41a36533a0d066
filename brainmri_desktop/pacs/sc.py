"""Secondary-capture images (highdicom) of flagged slices with the Grad-CAM overlay burnt in and labelled as such,
for viewers that cannot show an overlay of their own. They join the report's study as one more new series."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import highdicom as hd
import numpy as np
import pydicom
from pydicom.uid import generate_uid

from .findings import SliceFinding
from .sr import MANUFACTURER

SC_SERIES_NUMBER = 9902
SC_SERIES_DESCRIPTION = "Grad-CAM overlays, burnt in (AI triage aid)"  # LO: 64 characters at most
LABEL = "GRAD-CAM OVERLAY - AI TRIAGE AID, NOT A DIAGNOSIS"
OPACITY = 0.45


REVIEW_LINES = {"agree": "READER AGREED WITH THIS FLAG", "disagree": "READER DISAGREED WITH THIS FLAG"}
NOT_REVIEWED = "NOT REVIEWED BY A READER"


def capture_lines(finding: SliceFinding, caveat: str | None = None) -> list[str]:
    """What a capture says under its label: the reader's review of the slice (a slice the reader disagreed with is
    sent labelled so, not as if agreed), and the caveat on this model's map when it has one."""
    verdict = finding.mark.verdict if finding.mark is not None else ""
    return [REVIEW_LINES.get(verdict, NOT_REVIEWED)] + ([caveat.upper()] if caveat else [])


def burn_overlay(image: np.ndarray, cam: np.ndarray, lines: Sequence[str] = ()) -> np.ndarray:
    """RGB uint8: the slice (display values in [0, 1]) under the map (in [0, 1], resized to the slice) in the jet
    colours, with the label and `lines` (from `capture_lines`) written across the top so that nobody takes it for an
    acquired image or for a map the reader accepted."""
    grey = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    heat = cv2.resize(np.clip(cam, 0, 1).astype(np.float32), (grey.shape[1], grey.shape[0]))
    coloured = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    rgb = cv2.addWeighted(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), 1 - OPACITY, coloured, OPACITY, 0)
    scale = max(grey.shape[1] / 900, 0.25)
    step = max(int(24 * scale), 8)
    for row, text in enumerate([LABEL, *lines], start=1):
        colour = (255, 80, 80) if text == REVIEW_LINES["disagree"] else (255, 255, 255)
        cv2.putText(rgb, text, (2, row * step), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(int(2 * scale), 1),
                    cv2.LINE_AA)
    return rgb


def _orientation(source: pydicom.Dataset) -> tuple[str, str]:
    """PatientOrientation (row and column directions) from the source's ImageOrientationPatient."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    try:
        cosines = np.asarray([float(v) for v in source.ImageOrientationPatient]).reshape(2, 3)
    except (AttributeError, TypeError, ValueError):
        return ("L", "P")  # unknown: the axial convention, as far as a capture of a 2-D view can say
    axes = [int(np.argmax(np.abs(c))) for c in cosines]
    return tuple(letters[a][0 if c[a] > 0 else 1] for a, c in zip(axes, cosines))


def build_overlay_images(findings: list[SliceFinding], sources: Mapping, overlays: Mapping[int, np.ndarray],
                         caveat: str | None = None) -> list[hd.sc.SCImage]:
    """One SC image per entry of `overlays` (index into `findings` -> RGB uint8 image from `burn_overlay`, burnt with
    the same `capture_lines`)."""
    series_uid = generate_uid()
    images = []
    for number, (index, rgb) in enumerate(sorted(overlays.items()), start=1):
        source = sources[findings[index].path]
        sc = hd.sc.SCImage.from_ref_dataset(
            source, np.ascontiguousarray(rgb, dtype=np.uint8), "RGB", 8, "PATIENT", series_uid, SC_SERIES_NUMBER,
            generate_uid(), number, MANUFACTURER, patient_orientation=_orientation(source))
        sc.SeriesDescription = SC_SERIES_DESCRIPTION
        sc.BurnedInAnnotation = "YES"
        sc.ImageComments = " - ".join([LABEL, *capture_lines(findings[index], caveat)])
        sc.ImageType = ["DERIVED", "SECONDARY"]
        sc.SourceImageSequence = [_source_reference(source, findings[index].frame)]
        images.append(sc)
    return images


def _source_reference(source: pydicom.Dataset, frame: int) -> pydicom.Dataset:
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        ref.ReferencedFrameNumber = frame + 1
    return ref
