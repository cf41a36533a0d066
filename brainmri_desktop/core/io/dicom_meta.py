"""What a DICOM header says about each frame: series, patient, geometry and acquisition.

Enhanced (multi-frame) objects carry geometry per frame in functional groups; a frame's group item comes from the
Per-Frame Functional Groups Sequence, else from the Shared one. Classic objects carry one set of attributes for the
whole file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom

from .slices import Acquisition, PatientInfo, SeriesInfo

# Private b-value tags (group, element offset in the private block, block creator), read when DiffusionBValue is absent.
_PRIVATE_B_VALUES = (
    (0x0019, 0x0C, "SIEMENS MR HEADER"),
    (0x0043, 0x39, "GEMS_PARM_01"),
    (0x2001, 0x03, "Philips Imaging DD 001"),
)
_GE_B_OFFSET = 1e9  # GE adds 10^9 to the b-value on some software versions


@dataclass(frozen=True)
class FrameMeta:
    """One frame's geometry and acquisition, as its headers give them."""

    acquisition: Acquisition
    position: float | None = None  # along the slice normal, mm
    pixel_spacing: tuple[float, float] | None = None
    window: tuple[float, float] | None = None
    rescale: tuple[float, float] | None = None  # (slope, intercept) from the functional groups


def text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def first_float(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        number = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if np.isfinite(number) else None


def _floats(value, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and np.isfinite(numbers).all() else None


def _strings(value) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    values = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    return tuple(str(v).strip().upper() for v in values)


def int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def series_info(ds: pydicom.Dataset, path: Path) -> SeriesInfo:
    return SeriesInfo(
        uid=text(ds, "SeriesInstanceUID") or f"file:{path}",
        description=text(ds, "SeriesDescription"),
        modality=text(ds, "Modality"),
        study_description=text(ds, "StudyDescription"),
        study_date=text(ds, "StudyDate"),
        study_uid=text(ds, "StudyInstanceUID"),
        number=int_or_none(ds.get("SeriesNumber")),
    )


def patient_info(ds: pydicom.Dataset) -> PatientInfo:
    return PatientInfo(
        name=text(ds, "PatientName"),
        patient_id=text(ds, "PatientID"),
        birth_date=text(ds, "PatientBirthDate"),
        accession=text(ds, "AccessionNumber"),
    )


def window_of(item: pydicom.Dataset) -> tuple[float, float] | None:
    centre, width = first_float(item.get("WindowCenter")), first_float(item.get("WindowWidth"))
    if centre is None or width is None or width <= 1:
        return None
    return centre, width


def normal_position(orientation, position) -> float | None:
    """Distance along the slice normal, so slices sort the way the scanner stacked them whatever their order."""
    if orientation is None or position is None:
        return None
    o = np.asarray(orientation, dtype=float)
    return float(np.dot(np.cross(o[:3], o[3:]), np.asarray(position, dtype=float)))


def _private_b_value(ds: pydicom.Dataset) -> float | None:
    for group, offset, creator in _PRIVATE_B_VALUES:
        try:
            value = ds.get_private_item(group, offset, creator).value
        except (KeyError, ValueError):
            continue
        if isinstance(value, bytes):  # VR UN where the reader knew no private dictionary
            philips_float = group == 0x2001 and len(value) == 4
            value = struct.unpack("<f", value)[0] if philips_float else value.decode("ascii", "ignore").split("\\")[0]
        b = first_float(value)
        if b is not None and group == 0x0043 and b >= _GE_B_OFFSET:
            b %= _GE_B_OFFSET
        if b is not None:
            return b
    return None


def base_acquisition(ds: pydicom.Dataset) -> Acquisition:
    """The file-level acquisition (classic objects, and the defaults of an enhanced one)."""
    b_value = first_float(ds.get("DiffusionBValue"))
    return Acquisition(
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        image_position=_floats(ds.get("ImagePositionPatient"), 3),
        image_type=_strings(ds.get("ImageType")),
        b_value=b_value if b_value is not None else _private_b_value(ds),
        scanning_sequence=_strings(ds.get("ScanningSequence")),
        sequence_variant=_strings(ds.get("SequenceVariant")),
        sequence_name=text(ds, "SequenceName") or text(ds, "PulseSequenceName"),
        mr_acquisition_type=text(ds, "MRAcquisitionType").upper(),
        sop_class_uid=text(ds, "SOPClassUID"),
        slice_thickness=first_float(ds.get("SliceThickness")),
    )


def _spacing(value) -> tuple[float, float] | None:
    spacing = _floats(value, 2)
    return spacing if spacing and min(spacing) > 0 else None


def _group_item(items: list[pydicom.Dataset], keyword: str) -> pydicom.Dataset | None:
    """The first item of `keyword` in the frame's own groups, else in the shared groups."""
    for groups in items:
        sequence = groups.get(keyword)
        if sequence:
            return sequence[0]
    return None


def _frame_type(items: list[pydicom.Dataset]) -> tuple[str, ...]:
    for groups in items:
        for element in groups:  # MR/CT/... Image Frame Type Sequence: the keyword depends on the modality
            if element.VR == "SQ" and element.keyword.endswith("FrameTypeSequence") and element.value:
                return _strings(element.value[0].get("FrameType"))
    return ()


def _enhanced_frame(items: list[pydicom.Dataset], base: Acquisition) -> FrameMeta:
    plane = _group_item(items, "PlaneOrientationSequence")
    where = _group_item(items, "PlanePositionSequence")
    measures = _group_item(items, "PixelMeasuresSequence")
    diffusion = _group_item(items, "MRDiffusionSequence")
    voi = _group_item(items, "FrameVOILUTSequence")
    transform = _group_item(items, "PixelValueTransformationSequence")
    orientation = _floats(plane.get("ImageOrientationPatient"), 6) if plane else None
    position = _floats(where.get("ImagePositionPatient"), 3) if where else None
    b_value = first_float(diffusion.get("DiffusionBValue")) if diffusion else None
    thickness = first_float(measures.get("SliceThickness")) if measures else None
    slope = first_float(transform.get("RescaleSlope")) if transform else None
    intercept = first_float(transform.get("RescaleIntercept")) if transform else None
    acquisition = replace(
        base,
        orientation=orientation or base.orientation,
        image_position=position,
        image_type=_frame_type(items) or base.image_type,
        b_value=b_value if b_value is not None else base.b_value,
        slice_thickness=thickness if thickness is not None else base.slice_thickness,
    )
    return FrameMeta(
        acquisition=acquisition,
        position=normal_position(acquisition.orientation, position),
        pixel_spacing=_spacing(measures.get("PixelSpacing")) if measures else None,
        window=window_of(voi) if voi else None,
        rescale=(slope, intercept if intercept is not None else 0.0) if slope is not None else None,
    )


def frame_metas(ds: pydicom.Dataset, frames: int) -> list[FrameMeta]:
    """Each frame's metadata. Enhanced objects: from the functional groups. Classic ones: the file's attributes for a
    single frame; a classic multi-frame object says nothing about where frames after the first lie, so their
    position stays unknown (they keep their frame order) rather than being made up."""
    base = base_acquisition(ds)
    spacing = _spacing(ds.get("PixelSpacing"))
    window = window_of(ds)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    if per_frame or shared:
        metas = []
        for i in range(frames):
            items = ([per_frame[i]] if i < len(per_frame) else []) + list(shared[:1])
            meta = _enhanced_frame(items, base)
            metas.append(replace(meta, pixel_spacing=meta.pixel_spacing or spacing, window=meta.window or window))
        return metas
    if frames == 1:
        position = normal_position(base.orientation, base.image_position)
        if position is None:
            position = first_float(ds.get("SliceLocation"))
        return [FrameMeta(acquisition=base, position=position, pixel_spacing=spacing, window=window)]
    later = replace(base, image_position=None)
    return [FrameMeta(acquisition=base if i == 0 else later, pixel_spacing=spacing, window=window)
            for i in range(frames)]
