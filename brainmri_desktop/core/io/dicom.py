"""DICOM files: single and multi-frame, compressed syntaxes through pylibjpeg, modality and VOI LUTs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from ..errors import BrainMRIError, NotAnImageError, UnreadableFileError, UnsupportedError
from .codestream import declared_size
from .slices import PatientInfo, SeriesInfo, Slice

# pydicom logs element values when it meets odd ones; values can be identifying, so they stay out of our logs.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)

MAX_PIXELS = 128 * 1024 * 1024  # samples over all frames (a 120-frame colour cine at 640x480 is 110 M): refuse headers that claim more before anything is decoded
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def is_dicom(path: Path) -> bool:
    """True when the file carries the DICM preamble marker."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


def _first_float(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def series_info(ds: pydicom.Dataset, path: Path) -> SeriesInfo:
    return SeriesInfo(
        uid=_text(ds, "SeriesInstanceUID") or f"file:{path}",
        description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality"),
        study_description=_text(ds, "StudyDescription"),
        study_date=_text(ds, "StudyDate"),
    )


def patient_info(ds: pydicom.Dataset) -> PatientInfo:
    return PatientInfo(
        name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        birth_date=_text(ds, "PatientBirthDate"),
        accession=_text(ds, "AccessionNumber"),
    )


def _slice_position(ds: pydicom.Dataset) -> float | None:
    """Distance along the slice normal, so slices sort the way the scanner stacked them whatever their order on disk."""
    try:
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        position = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
        if orientation.shape != (6,) or position.shape != (3,):
            return None
        return float(np.dot(np.cross(orientation[:3], orientation[3:]), position))
    except (AttributeError, TypeError, ValueError):
        return _first_float(ds.get("SliceLocation"))


def _window(ds: pydicom.Dataset) -> tuple[float, float] | None:
    centre, width = _first_float(ds.get("WindowCenter")), _first_float(ds.get("WindowWidth"))
    if centre is None or width is None or not np.isfinite([centre, width]).all() or width <= 1:
        return None
    return centre, width


def _read_dataset(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        # Files written without the 128-byte preamble are still common from older exporters.
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure means the file cannot be used
            raise UnreadableFileError(path, f"not a DICOM file ({type(exc).__name__})") from None
        if not any(k in ds for k in ("SOPClassUID", "Modality", *_PIXEL_KEYWORDS)):
            raise UnreadableFileError(path, "not a DICOM file") from None
        return ds
    except (EOFError, OSError) as exc:
        raise UnreadableFileError(path, f"truncated or unreadable ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001
        raise UnreadableFileError(path, f"corrupt DICOM ({type(exc).__name__}: {str(exc)[:120]})") from None


def _decode(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        kind = _text(ds, "Modality") or getattr(ds.get("SOPClassUID"), "name", "") or "dataset"
        raise NotAnImageError(path, f"holds no image (a {kind} object without pixel data)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise UnreadableFileError(path, "image size is missing or invalid") from None
    if min(rows, cols, frames, samples) < 1 or rows * cols * frames * samples > MAX_PIXELS:
        raise UnreadableFileError(path, f"implausible image size ({cols}x{rows}, {frames} frames)")
    _check_frame_sizes(ds, path, rows, cols, frames)
    try:
        return ds.pixel_array
    except NotImplementedError as exc:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", str(syntax or "unknown"))
        raise UnsupportedError(path, f"transfer syntax not supported: {name} ({str(exc)[:80]})") from None
    except (MemoryError, RecursionError):
        raise UnreadableFileError(path, "pixel data cannot be decoded (too large)") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - decoders raise many types; the Rust RLE decoder even panics
        # (pyo3's PanicException derives from BaseException), found by the fuzz harness
        raise UnreadableFileError(path, f"pixel data cannot be decoded ({type(exc).__name__}: {str(exc)[:120]})") from None


def _encapsulated_frames(ds: pydicom.Dataset, frames: int):
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed or "PixelData" not in ds:
        return ()
    try:
        return list(generate_frames(ds.PixelData, number_of_frames=frames))
    except Exception:  # noqa: BLE001 - damaged fragments: the decoder reports them
        return ()


def _check_frame_sizes(ds: pydicom.Dataset, path: Path, rows: int, cols: int, frames: int) -> None:
    """Refuse a compressed frame whose own header claims a larger image than the DICOM header (before decoding)."""
    for number, frame in enumerate(_encapsulated_frames(ds, frames), start=1):
        size = declared_size(frame)
        if size is not None and (size[0] > rows or size[1] > cols):
            raise UnreadableFileError(
                path, f"frame {number} claims {size[1]}x{size[0]} pixels but the header says {cols}x{rows}")


def _to_grey_frames(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """Frames x rows x columns, colour (already RGB: pydicom converts YBR) reduced to luminance."""
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if samples > 1:
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype not in (np.uint8, np.uint16, np.float32):
            arr = arr.astype(np.float32)  # OpenCV converts colour only at these depths (32-bit RGB exists)
        arr = np.stack([cv2.cvtColor(np.ascontiguousarray(f[..., :3]), cv2.COLOR_RGB2GRAY) for f in arr])
    elif frames == 1 or arr.ndim == 2:
        arr = arr.reshape((1, *arr.shape[-2:]))
    return arr


def read_dicom(path: Path) -> list[Slice]:
    """All frames of one DICOM file as slices; typed errors for anything that cannot be shown."""
    path = Path(path)
    try:
        return _read_dicom(path)
    except (BrainMRIError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - pydicom parses elements lazily, so damage surfaces on any access
        raise UnreadableFileError(path, f"malformed DICOM ({type(exc).__name__}: {str(exc)[:120]})") from None


def _read_dicom(path: Path) -> list[Slice]:
    try:
        if path.stat().st_size == 0:
            raise UnreadableFileError(path, "empty file")
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read_dataset(path)
        arr = _decode(ds, path)
        try:
            colour = int(ds.get("SamplesPerPixel", 1) or 1) > 1
            if not colour:
                arr = apply_modality_lut(arr, ds)
            window = _window(ds)
            if not colour and "VOILUTSequence" in ds:
                arr = apply_voi_lut(arr, ds, prefer_lut=True)
                window = None
            frames = _to_grey_frames(np.asarray(arr), ds)
        except Exception as exc:  # noqa: BLE001
            raise UnreadableFileError(path, f"pixel values cannot be interpreted ({type(exc).__name__})") from None
    if frames.ndim != 3 or min(frames.shape[1:]) < 8:
        raise UnreadableFileError(path, f"image too small or malformed ({frames.shape})")
    if frames.dtype == np.float64:
        frames = frames.astype(np.float32)
    if _text(ds, "PhotometricInterpretation") == "MONOCHROME1":
        # Inverted greyscale: high values are dark. Flip so that every slice reads the same way.
        lo, hi = float(frames.min()), float(frames.max())
        frames = (hi + lo - frames.astype(np.float32)).astype(np.float32)
        if window is not None:
            window = (hi + lo - window[0], window[1])
    if not np.isfinite(frames).all():
        frames = np.nan_to_num(frames.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    series, patient = series_info(ds, path), patient_info(ds)
    position = _slice_position(ds)
    instance = ds.get("InstanceNumber")
    try:
        instance = int(instance) if instance not in (None, "") else None
    except (TypeError, ValueError):
        instance = None
    spacing = ds.get("PixelSpacing")
    try:
        spacing = (float(spacing[0]), float(spacing[1])) if spacing else None
    except (TypeError, ValueError, IndexError):
        spacing = None
    return [
        Slice(
            path=path,
            pixels=np.ascontiguousarray(frame),
            frame=i,
            window=window,
            position=position if len(frames) == 1 else (position or 0.0) + i,
            instance=instance,
            pixel_spacing=spacing,
            series=series,
            patient=patient,
        )
        for i, frame in enumerate(frames)
    ]
