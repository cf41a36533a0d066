"""Turning what the user chose (files, folders, a mix) into series of ordered slices, and a list of what failed."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BrainMRIError, CancelledError, NotAnImageError, UnreadableFileError
from .archive import ZIP_SUFFIX, ZipListing, is_zip, list_zip
from .dicom import DICOM_SUFFIXES, is_dicom, read_dicom
from .dicomdir import DICOMDIR_NAME, is_dicomdir, referenced_images
from .images import IMAGE_SUFFIXES, read_image
from .nifti import NIFTI_SUFFIXES, is_nifti, read_nifti
from .slices import SeriesInfo, Slice

# Files that sit beside images in exported studies and are never images: skipped quietly rather than listed as errors.
_IGNORED_SUFFIXES = frozenset(
    {".txt", ".json", ".md", ".csv", ".xml", ".html", ".htm", ".pdf", ".py", ".npy", ".ini", ".log"}
)
_IGNORED_NAMES = frozenset({DICOMDIR_NAME, ".DS_Store", "Thumbs.db"})  # a DICOMDIR on disk is read, not skipped
# What the loader reads by name, as file-dialog patterns (files without a suffix are tried as DICOM too).
OPENABLE_PATTERNS = (*sorted(f"*{s}" for s in IMAGE_SUFFIXES | DICOM_SUFFIXES | {*NIFTI_SUFFIXES, ZIP_SUFFIX}),
                     DICOMDIR_NAME)
_READ_HERE = "PNG, JPEG, TIFF, BMP, DICOM, NIfTI (.nii, .nii.gz) and zip archives of them"
# What a refused file is, by its first bytes, so that the refusal says more than "unknown".
_KINDS = ((b"PK\x03\x04", "a zip archive"), (b"\x1f\x8b", "gzip-compressed data that is not a NIfTI volume"),
          (b"%PDF", "a PDF document"), (b"GIF8", "a GIF image"), (b"RIFF", "a RIFF (WebP/AVI/WAV) file"),
          (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image file"), (b"\xd0\xcf\x11\xe0", "an Office document"))

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


@dataclass
class Series:
    info: SeriesInfo
    slices: list[Slice]

    @property
    def label(self) -> str:
        what = self.info.description or self.info.uid.split(":", 1)[-1]
        return f"{what} ({self.info.modality or '?'}, {len(self.slices)} slices)"


@dataclass
class LoadReport:
    series: list[Series] = field(default_factory=list)
    errors: list[BrainMRIError] = field(default_factory=list)

    @property
    def slices(self) -> list[Slice]:
        return [s for series in self.series for s in series.slices]


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError):
        return False


def _skipped(name: str) -> bool:
    return name in _IGNORED_NAMES or name.startswith(".") or Path(name).suffix.lower() in _IGNORED_SUFFIXES


def _dicomdir_images(path: Path, errors: list[BrainMRIError]) -> list[Path]:
    try:
        files, missing = referenced_images(path)
    except BrainMRIError as exc:
        errors.append(exc)
        return []
    errors.extend(missing)
    return files


def _walk(given: Path, errors: list[BrainMRIError]) -> list[Path]:
    """Candidate files under one folder. A zip in the folder is opened when nothing else there is (the folder that
    only holds the study's zip); beside other files it is named as not opened, since it is often their copy."""
    root = given.resolve()
    files: list[Path] = []
    zips: list[Path] = []

    def walk_error(exc: OSError) -> None:
        errors.append(UnreadableFileError(exc.filename or given, f"folder cannot be read ({exc.strerror})"))

    for folder, dirs, names in os.walk(given, followlinks=False, onerror=walk_error):
        dirs.sort(key=_natural_key)
        for name in sorted(names, key=_natural_key):
            path = Path(folder, name)
            if name.upper() != DICOMDIR_NAME and _skipped(name):
                continue
            if path.is_symlink() and not _inside(path, root):
                errors.append(UnreadableFileError(path, "link to a file outside the chosen folder, not read"))
            elif name.upper() == DICOMDIR_NAME:
                files.extend(_dicomdir_images(path, errors))
            elif is_zip(path):
                zips.append(path)
            else:
                files.append(path)
    if files:
        errors.extend(UnreadableFileError(z, "zip archive beside other files, not opened: open it on its own")
                      for z in zips)
        return files
    return zips


def find_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[BrainMRIError]]:
    """Every candidate file under the given paths, each once. Folders are walked without following links, and a
    linked file that points outside its chosen folder is not read, so a link loop or a stray link cannot lead anywhere
    else. A DICOMDIR, given or found, stands for the images its records list."""
    files: list[Path] = []
    errors: list[BrainMRIError] = []
    for given in map(Path, paths):
        if given.is_file():
            files.extend(_dicomdir_images(given, errors) if is_dicomdir(given) else [given])
        elif given.is_dir():
            files.extend(_walk(given, errors))
        else:
            errors.append(UnreadableFileError(given, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for path in files:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, errors


def _refusal(path: Path, data: bytes | None) -> str:
    head = data[:16] if data is not None else b""
    if data is None:
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError:
            pass
    kind = next((what for magic, what in _KINDS if head.startswith(magic)), None)
    if kind is None:
        kind = f"not an image, DICOM or NIfTI file (suffix {path.suffix.lower() or 'none'!r})"
    elif is_zip(path, head):
        kind += ", read only when opened as a study (on its own or as a folder's only file)"
    return f"{kind}; read here: {_READ_HERE}"


def read_file(path: Path, data: bytes | None = None) -> list[Slice]:
    """Slices of one file (or of its bytes, for a zip member shown as `path`), chosen by content where the name
    does not settle it."""
    suffix = path.suffix.lower()
    if is_nifti(path):
        return read_nifti(path, data)
    if suffix in IMAGE_SUFFIXES and not is_dicom(path, data):
        series = SeriesInfo(uid=f"folder:{path.parent}", description=path.parent.name, modality="image")
        return [read_image(path, series, data)]
    if suffix in DICOM_SUFFIXES or suffix == "" or is_dicom(path, data):
        return read_dicom(path, data)
    raise UnreadableFileError(path, _refusal(path, data))


def _order_key(slice_: Slice) -> tuple:
    return (
        slice_.position if slice_.position is not None else float("inf"),
        slice_.instance if slice_.instance is not None else 0,
        _natural_key(slice_.path.name),
        slice_.frame,
    )


def group_series(slices: Iterable[Slice]) -> list[Series]:
    """Slices grouped by series UID (image files by folder) and ordered by position along the normal, then
    instance number, then file name."""
    groups: dict[str, Series] = {}
    for s in slices:
        info = s.series or SeriesInfo(uid=f"file:{s.path}")
        groups.setdefault(info.uid, Series(info=info, slices=[])).slices.append(s)
    for series in groups.values():
        series.slices.sort(key=_order_key)
    return list(groups.values())


def _read(path: Path, data: bytes | None, slices: list[Slice], errors: list[BrainMRIError]) -> None:
    try:
        slices.extend(read_file(path, data))
    except BrainMRIError as exc:
        errors.append(exc)
    except (OSError, MemoryError) as exc:
        errors.append(UnreadableFileError(path, f"cannot be read ({type(exc).__name__})"))


def _jobs(files: list[Path], errors: list[BrainMRIError]) -> list[Path | ZipListing]:
    """Files to read, each zip replaced by the listing of its members (checked before anything is decompressed)."""
    jobs: list[Path | ZipListing] = []
    for path in files:
        if not is_zip(path):
            jobs.append(path)
            continue
        try:
            listing = list_zip(path, _skipped)
        except BrainMRIError as exc:
            errors.append(exc)
            continue
        errors.extend(listing.refused)
        if not listing.members and not listing.refused:
            errors.append(NotAnImageError(path, "zip archive holds no image, DICOM or NIfTI file"))
        jobs.append(listing)
    return jobs


def iter_load(paths: Iterable[str | Path]) -> Generator[tuple[int, int], None, LoadReport]:
    """Reads file by file (zip member by member), yielding (done, total); returns the LoadReport. Bad files are
    collected with their reason; the good ones always load."""
    files, errors = find_files(paths)
    jobs = _jobs(files, errors)
    total = sum(len(job.members) if isinstance(job, ZipListing) else 1 for job in jobs)
    slices: list[Slice] = []
    done = 0
    for job in jobs:
        if isinstance(job, Path):
            _read(job, None, slices, errors)
            done += 1
            yield done, total
            continue
        try:
            for path, content in job.read():
                if isinstance(content, BrainMRIError):
                    errors.append(content)
                else:
                    _read(path, content, slices, errors)
                done += 1
                yield done, total
        except BrainMRIError as exc:
            errors.append(exc)
    return LoadReport(series=group_series(slices), errors=errors)


def load_paths(
    paths: Iterable[str | Path],
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> LoadReport:
    """Read everything under `paths` (see `iter_load`), with a progress callback and a cancel check."""
    steps = iter_load(paths)
    while True:
        if cancel is not None and cancel():
            raise CancelledError()
        try:
            done, total = next(steps)
        except StopIteration as finished:
            return finished.value
        if progress is not None:
            progress(done, total)
