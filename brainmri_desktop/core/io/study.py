"""Turning what the user chose (files, folders, a mix) into series of ordered slices, and a list of what failed."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BrainMRIError, CancelledError, UnreadableFileError
from .dicom import is_dicom, read_dicom
from .images import IMAGE_SUFFIXES, read_image
from .slices import SeriesInfo, Slice

# Files that sit beside images in exported studies and are never images: skipped quietly rather than listed as errors.
_IGNORED_SUFFIXES = frozenset(
    {".txt", ".json", ".md", ".csv", ".xml", ".html", ".htm", ".pdf", ".zip", ".py", ".npy", ".ini", ".log"}
)
_IGNORED_NAMES = frozenset({"DICOMDIR", ".DS_Store", "Thumbs.db"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".ima", ""})

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


def find_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[BrainMRIError]]:
    """Every candidate file under the given paths. Folders are walked without following links, and a linked file
    that points outside its chosen folder is not read, so a link loop or a stray link cannot lead anywhere else."""
    files: list[Path] = []
    errors: list[BrainMRIError] = []
    for given in paths:
        given = Path(given)
        if given.is_file():
            files.append(given)
            continue
        if not given.is_dir():
            errors.append(UnreadableFileError(given, "no such file or folder"))
            continue
        root = given.resolve()

        def walk_error(exc: OSError) -> None:
            errors.append(UnreadableFileError(exc.filename or given, f"folder cannot be read ({exc.strerror})"))

        for folder, dirs, names in os.walk(given, followlinks=False, onerror=walk_error):
            dirs.sort(key=_natural_key)
            for name in sorted(names, key=_natural_key):
                path = Path(folder, name)
                if name in _IGNORED_NAMES or name.startswith(".") or path.suffix.lower() in _IGNORED_SUFFIXES:
                    continue
                if path.is_symlink() and not _inside(path, root):
                    errors.append(UnreadableFileError(path, "link to a file outside the chosen folder, not read"))
                    continue
                files.append(path)
    return files, errors


def read_file(path: Path) -> list[Slice]:
    """Slices of one file, chosen by content where the name does not settle it."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES and not is_dicom(path):
        return [read_image(path, SeriesInfo(uid=f"folder:{path.parent}", description=path.parent.name, modality="image"))]
    if suffix in _DICOM_SUFFIXES or is_dicom(path):
        return read_dicom(path)
    raise UnreadableFileError(path, f"not an image or DICOM file (suffix {suffix!r})")


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


def iter_load(paths: Iterable[str | Path]) -> Generator[tuple[int, int], None, LoadReport]:
    """Reads file by file, yielding (done, total); returns the LoadReport. Bad files are collected with their
    reason; the good ones always load."""
    files, errors = find_files(paths)
    slices: list[Slice] = []
    for i, path in enumerate(files):
        try:
            slices.extend(read_file(path))
        except BrainMRIError as exc:
            errors.append(exc)
        except (OSError, MemoryError) as exc:
            errors.append(UnreadableFileError(path, f"cannot be read ({type(exc).__name__})"))
        yield i + 1, len(files)
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
