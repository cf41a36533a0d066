"""DICOM files: single and multi-frame, compressed syntaxes through pylibjpeg, modality and VOI LUTs."""

from __future__ import annotations

import io
import logging
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.encaps import encapsulate, generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from ..errors import BrainMRIError, NotAnImageError, UnreadableFileError, UnsupportedError
from .codestream import declared_size, lacks_scan, mend_sequential_scans
from .dicom_meta import FrameMeta, frame_metas, int_or_none, patient_info, series_info, text
from .slices import Slice

# pydicom logs element values when it meets odd ones; values can be identifying, so they stay out of our logs.
logging.getLogger("pydicom").setLevel(logging.CRITICAL)

MAX_PIXELS = 128 * 1024 * 1024  # samples over all frames (a 120-frame colour cine at 640x480 is 110 M): refuse headers that claim more before anything is decoded
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Suffixes that mark a DICOM file. Files without a suffix are tried as DICOM too (DICOMDIR media name them so), and
# any file with the DICM marker is DICOM whatever its name.
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima"})
_JPEG_SEQUENTIAL_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}


def one_line(message: str, limit: int = 160) -> str:
    """A library's message as one line, cut at a word: decoders report in several lines."""
    message = re.sub(r"\s+", " ", message).strip()
    if len(message) <= limit:
        return message
    return message[:limit].rsplit(" ", 1)[0] + " ..."


def is_dicom(path: Path, data: bytes | None = None) -> bool:
    """True when the file (or its bytes, for a zip member) carries the DICM preamble marker."""
    if data is not None:
        return data[128:132] == b"DICM"
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _read_dataset(path: Path, data: bytes | None) -> pydicom.Dataset:
    def source():
        return path if data is None else io.BytesIO(data)

    try:
        return pydicom.dcmread(source())
    except InvalidDicomError:
        # Files written without the 128-byte preamble are still common from older exporters.
        try:
            ds = pydicom.dcmread(source(), force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure means the file cannot be used
            raise UnreadableFileError(path, f"not a DICOM file ({type(exc).__name__})") from None
        if not any(k in ds for k in ("SOPClassUID", "Modality", *_PIXEL_KEYWORDS)):
            raise UnreadableFileError(path, "not a DICOM file") from None
        return ds
    except (EOFError, OSError) as exc:
        raise UnreadableFileError(path, f"truncated or unreadable ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001
        raise UnreadableFileError(path, f"corrupt DICOM ({type(exc).__name__}: {one_line(str(exc), 120)})") from None


def _decode(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        stored_as = getattr(getattr(ds, "file_meta", None), "get", lambda _: None)("MediaStorageSOPClassUID")
        kind = text(ds, "Modality") or getattr(ds.get("SOPClassUID") or stored_as, "name", "") or "dataset"
        raise NotAnImageError(path, f"holds no image (a {kind} object without pixel data)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise UnreadableFileError(path, "image size is missing or invalid") from None
    if min(rows, cols, frames, samples) < 1 or rows * cols * frames * samples > MAX_PIXELS:
        raise UnreadableFileError(path, f"implausible image size ({cols}x{rows}, {frames} frames)")
    _check_frames(ds, path, rows, cols, frames)
    try:
        return ds.pixel_array
    except NotImplementedError as exc:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", str(syntax or "unknown"))
        raise UnsupportedError(path, f"transfer syntax not supported: {name} ({one_line(str(exc), 80)})") from None
    except (MemoryError, RecursionError):
        raise UnreadableFileError(path, "pixel data cannot be decoded (too large)") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - decoders raise many types; the Rust RLE decoder even panics
        # (pyo3's PanicException derives from BaseException), found by the fuzz harness
        reason = f"pixel data cannot be decoded ({type(exc).__name__}: {one_line(str(exc))})"
        raise UnreadableFileError(path, reason) from None


def _encapsulated_frames(ds: pydicom.Dataset, frames: int):
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed or "PixelData" not in ds:
        return ()
    try:
        return list(generate_frames(ds.PixelData, number_of_frames=frames))
    except Exception:  # noqa: BLE001 - damaged fragments: the decoder reports them
        return ()


def _check_frames(ds: pydicom.Dataset, path: Path, rows: int, cols: int, frames: int) -> None:
    """Refuse a compressed frame whose own header claims a larger image than the DICOM header (before decoding), and
    mend sequential JPEG scans in memory (see `mend_sequential_scans`); the file itself is never written."""
    encoded = _encapsulated_frames(ds, frames)
    for number, frame in enumerate(encoded, start=1):
        size = declared_size(frame)
        if size is not None and (size[0] > rows or size[1] > cols):
            raise UnreadableFileError(
                path, f"frame {number} claims {size[1]}x{size[0]} pixels but the header says {cols}x{rows}")
        if size is not None and 0 in size:
            # a height of 0 is left to a later marker; libjpeg then grew a damaged frame to 17 GB (fuzz harness)
            raise UnreadableFileError(path, f"frame {number} declares {size[1]}x{size[0]} pixels, not decoded")
        if lacks_scan(frame):
            raise UnreadableFileError(path, f"frame {number} is truncated: its JPEG headers are followed by no scan")
    if encoded and ds.file_meta.TransferSyntaxUID in _JPEG_SEQUENTIAL_SYNTAXES:
        mended = [mend_sequential_scans(frame) for frame in encoded]
        if mended != encoded:
            ds.PixelData = encapsulate(mended)


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


def read_dicom(path: Path, data: bytes | None = None) -> list[Slice]:
    """All frames of one DICOM file (or of its bytes, for a zip member shown as `path`) as slices; typed errors for
    anything that cannot be shown."""
    path = Path(path)
    try:
        return _read_dicom(path, data)
    except (BrainMRIError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - pydicom parses elements lazily, so damage surfaces on any access
        raise UnreadableFileError(path, f"malformed DICOM ({type(exc).__name__}: {one_line(str(exc), 120)})") from None


def _rescaled(frames: np.ndarray, ds: pydicom.Dataset, metas: list[FrameMeta]) -> np.ndarray:
    """Enhanced objects keep their rescale in the functional groups, where pydicom's modality LUT does not look."""
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds or all(m.rescale in (None, (1.0, 0.0)) for m in metas):
        return frames
    out = frames.astype(np.float32)
    for frame, meta in zip(out, metas):
        if meta.rescale is not None:
            frame *= meta.rescale[0]
            frame += meta.rescale[1]
    return out


def _read_dicom(path: Path, data: bytes | None) -> list[Slice]:
    try:
        size = path.stat().st_size if data is None else len(data)
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise UnreadableFileError(path, "empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read_dataset(path, data)
        arr = _decode(ds, path)
        try:
            grey = int(ds.get("SamplesPerPixel", 1) or 1) == 1
            if grey:
                arr = apply_modality_lut(arr, ds)
            voi_lut = grey and "VOILUTSequence" in ds
            if voi_lut:
                arr = apply_voi_lut(arr, ds, prefer_lut=True)
            frames = _to_grey_frames(np.asarray(arr), ds)
            metas = frame_metas(ds, len(frames))
            if grey and not voi_lut:
                frames = _rescaled(frames, ds, metas)
        except Exception as exc:  # noqa: BLE001
            raise UnreadableFileError(path, f"pixel values cannot be interpreted ({type(exc).__name__})") from None
    if frames.ndim != 3 or min(frames.shape[1:]) < 8:
        raise UnreadableFileError(path, f"image too small or malformed ({frames.shape})")
    if frames.dtype == np.float64:
        frames = frames.astype(np.float32)
    windows = [None if voi_lut else m.window for m in metas]
    if text(ds, "PhotometricInterpretation") == "MONOCHROME1":
        # Inverted greyscale: high values are dark. Flip so that every slice reads the same way.
        lo, hi = float(frames.min()), float(frames.max())
        frames = (hi + lo - frames.astype(np.float32)).astype(np.float32)
        windows = [(hi + lo - w[0], w[1]) if w else None for w in windows]
    if not np.isfinite(frames).all():
        frames = np.nan_to_num(frames.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    series, patient = series_info(ds, path), patient_info(ds)
    instance = int_or_none(ds.get("InstanceNumber"))
    return [
        Slice(
            path=path,
            pixels=np.ascontiguousarray(frame),
            frame=i,
            window=window,
            position=meta.position,
            instance=instance,
            pixel_spacing=meta.pixel_spacing,
            series=series,
            acquisition=meta.acquisition,
            patient=patient,
        )
        for i, (frame, meta, window) in enumerate(zip(frames, metas, windows))
    ]
