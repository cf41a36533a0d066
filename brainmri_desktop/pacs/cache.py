"""The local cache of retrieved instances: `<cache>/pacs/studies/<study UID>/<series UID>/<SOP UID>.dcm`.

A series is written into a private folder under `partial/` and renamed into place only once every instance is on
disk (core.atomic's `atomic_folder`), so a cancelled or failed retrieve leaves nothing behind and a series folder that
exists is always whole. The cache is bounded: after each retrieve the least recently used studies go until it fits.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pydicom

from ..core.atomic import atomic_folder
from ..core.errors import CancelledError, PacsError
from .query import valid_uid

DEFAULT_MAX_BYTES = 2 << 30
STALE_PARTIAL_S = 24 * 3600
SUFFIX = ".dcm"


def default_cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("BrainMRI", appauthor=False) / "pacs"


def _folder_size(folder: Path) -> int:
    total = 0
    for parent, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


class StudyCache:
    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.max_bytes = max_bytes

    @property
    def studies_dir(self) -> Path:
        return self.root / "studies"

    @property
    def partial_dir(self) -> Path:
        return self.root / "partial"

    def series_dir(self, study_uid: str, series_uid: str) -> Path:
        for uid in (study_uid, series_uid):
            if not valid_uid(uid):
                raise PacsError(self.root, f"not a DICOM UID: {uid[:70]!r}")
        return self.studies_dir / study_uid / series_uid

    def cached_series(self, study_uid: str, series_uid: str) -> list[Path]:
        """The series' files when it is in the cache (whole, by construction), else an empty list."""
        folder = self.series_dir(study_uid, series_uid)
        return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []

    def touch(self, study_uid: str) -> None:
        try:
            os.utime(self.studies_dir / study_uid)
        except OSError:
            pass

    def store_series(self, study_uid: str, series_uid: str, datasets: Iterable[pydicom.Dataset],
                     on_instance: Callable[[], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> list[Path]:
        """Writes the instances as they arrive, then puts the whole series in place; the paths of its files."""
        target = self.series_dir(study_uid, series_uid)
        try:
            # an older copy there (one the server's count no longer matches) is replaced whole
            with atomic_folder(target, scratch=self.partial_dir) as work:
                for ds in datasets:
                    if cancel is not None and cancel():
                        raise CancelledError()
                    self._write_instance(work, ds, study_uid, series_uid)
                    if on_instance is not None:
                        on_instance()
        except OSError as exc:
            raise PacsError(self.root, f"the cache cannot be written ({exc.strerror or type(exc).__name__})") from None
        self.touch(study_uid)
        return self.cached_series(study_uid, series_uid)

    def _write_instance(self, folder: Path, ds: pydicom.Dataset, study_uid: str, series_uid: str) -> None:
        uid = str(ds.get("SOPInstanceUID", ""))
        if not valid_uid(uid) or str(ds.get("SeriesInstanceUID", "")) != series_uid \
                or str(ds.get("StudyInstanceUID", "")) != study_uid:
            raise PacsError(self.root, "the server sent an instance that does not belong to the series asked for")
        ds.save_as(folder / f"{uid}{SUFFIX}", enforce_file_format=True)

    def size(self) -> int:
        return _folder_size(self.studies_dir) if self.studies_dir.is_dir() else 0

    def studies(self) -> list[Path]:
        """Cached study folders, least recently used first."""
        if not self.studies_dir.is_dir():
            return []
        return sorted((p for p in self.studies_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)

    def evict(self, keep: str | None = None) -> list[str]:
        """Removes least recently used studies (never `keep`) until the cache fits, and what a killed process left in
        `partial/`; the UIDs removed."""
        self._sweep_partial()
        removed = []
        sizes = {p: _folder_size(p) for p in self.studies()}
        total = sum(sizes.values())
        for folder, size in sizes.items():
            if total <= self.max_bytes:
                break
            if folder.name == keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed.append(folder.name)
        return removed

    def _sweep_partial(self) -> None:
        """Series folders a killed process left half-written; old enough that no running retrieve still owns them."""
        if not self.partial_dir.is_dir():
            return
        cutoff = time.time() - STALE_PARTIAL_S
        for folder in self.partial_dir.iterdir():
            try:
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    def clear(self) -> None:
        """Empties the cache (the user asked); left-overs of an interrupted process go too."""
        for folder in (self.studies_dir, self.partial_dir):
            shutil.rmtree(folder, ignore_errors=True)
