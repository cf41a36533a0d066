"""NIfTI volumes (.nii, .nii.gz) through nibabel: one axial slice per Slice, shown the way an axial DICOM is.

The volume is turned to the closest canonical (RAS+) orientation, so slice k lies at the k-th position from inferior
to superior, and each slice is laid out as radiologists read axial images: the patient's right on the image's
left, anterior at the top. Geometry is given in DICOM patient coordinates (LPS), so that a NIfTI slice and a DICOM
slice of the same head carry the same orientation and position.

Only 3-D volumes are read (a 4-D file with a single volume counts as 3-D). A 4-D series (fMRI, diffusion) is
refused with its shape: which volume to triage is the reader's choice, and a silent first volume (often b=0) would
put rows in the CSV that do not say where they came from.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import UnreadableFileError, UnsupportedError
from .slices import Acquisition, SeriesInfo, Slice

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_VOXELS = 128 * 1024 * 1024  # the same bound as for a DICOM file's samples
_LPS = np.diag([-1.0, -1.0, 1.0])  # RAS (NIfTI) to LPS (DICOM)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _decompressed(path: Path, data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(MAX_VOXELS * 8 + 1024 * 1024)  # the largest volume allowed, with its header
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFileError(path, f"damaged gzip data ({type(exc).__name__})") from None
    if len(out) > MAX_VOXELS * 8:
        raise UnreadableFileError(path, "NIfTI volume too large once decompressed")
    return out


def _load(path: Path, data: bytes | None) -> nib.Nifti1Image:
    try:
        if data is None:
            return nib.load(path)
        raw = _decompressed(path, data)
        image_type = nib.Nifti2Image if raw[:4] == (540).to_bytes(4, "little") else nib.Nifti1Image
        return image_type.from_bytes(raw)
    except UnreadableFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for a damaged header
        raise UnreadableFileError(path, f"not a readable NIfTI file ({type(exc).__name__}: {str(exc)[:100]})") from None


def _volume(path: Path, image) -> np.ndarray:
    shape = tuple(int(n) for n in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise UnsupportedError(path, f"{len(shape)}-D NIfTI {'x'.join(map(str, shape))}: only 3-D volumes are read; "
                                     "save the volume to triage as a file of its own")
    if min(shape[:2]) < 8 or int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        raise UnreadableFileError(path, f"implausible NIfTI volume size {'x'.join(map(str, shape))}")
    if image.get_data_dtype().kind not in "iuf":
        raise UnsupportedError(path, f"NIfTI voxels of type {image.get_data_dtype()} (RGB or complex) are not read")
    try:
        volume = np.asanyarray(image.dataobj).reshape(shape)
    except Exception as exc:  # noqa: BLE001 - a truncated file surfaces here
        raise UnreadableFileError(path, f"NIfTI voxel data cannot be read ({type(exc).__name__})") from None
    if volume.dtype == np.float64 or not np.isfinite(volume).all():
        volume = np.nan_to_num(volume.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return volume


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 and np.isfinite(norm) else None


def read_nifti(path: Path, data: bytes | None = None) -> list[Slice]:
    """The volume's axial slices from inferior to superior, `frame` = slice index, geometry from the affine."""
    path = Path(path)
    image = _load(path, data)
    try:
        image = nib.as_closest_canonical(image)
    except Exception as exc:  # noqa: BLE001 - a singular or non-finite affine
        raise UnreadableFileError(path, f"NIfTI orientation cannot be used ({type(exc).__name__})") from None
    volume = _volume(path, image)
    affine = np.asarray(image.affine, dtype=float)
    nx, ny, _ = volume.shape
    # pixel (row r, column c) of slice k is voxel (nx-1-c, ny-1-r, k): columns run to the patient's left, rows back
    row_dir, col_dir = _unit(_LPS @ -affine[:3, 0]), _unit(_LPS @ -affine[:3, 1])
    geometry = row_dir is not None and col_dir is not None and np.isfinite(affine).all()
    orientation = tuple(float(v) for v in (*row_dir, *col_dir)) if geometry else None
    normal = np.cross(row_dir, col_dir) if geometry else None
    zooms = image.header.get_zooms()
    spacing = (float(zooms[1]), float(zooms[0])) if min(zooms[:2]) > 0 else None
    series = SeriesInfo(uid=f"nifti:{path}", description=path.name, modality="")
    slices = []
    for k in range(volume.shape[2]):
        first = _LPS @ (affine @ np.array([nx - 1, ny - 1, k, 1.0]))[:3] if geometry else None
        acquisition = Acquisition(
            orientation=orientation,
            image_position=tuple(float(v) for v in first) if first is not None else None,
            slice_thickness=float(zooms[2]) if len(zooms) > 2 and zooms[2] > 0 else None,
        )
        slices.append(Slice(
            path=path,
            pixels=np.ascontiguousarray(volume[::-1, ::-1, k].T),
            frame=k,
            position=float(np.dot(normal, first)) if geometry else None,
            pixel_spacing=spacing,
            series=series,
            acquisition=acquisition,
        ))
    return slices
