"""A reader's agree/disagree marks and notes, kept per study in the user's data folder (never in the study folder).

The file is keyed by a hash of the study's file list, so it holds no patient data and no path in its name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic import atomic_write_text
from .io.slices import Slice

VERDICTS = ("agree", "disagree")


@dataclass(frozen=True)
class Mark:
    verdict: str  # agree | disagree
    note: str = ""


def reviews_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("BrainMRI", appauthor=False) / "reviews"


def slice_keys(slices: list[Slice]) -> list[str]:
    """A key per slice: its resolved path and frame. Folders are resolved once each, files only when they are
    links: resolving every file of a 2,000-slice study took a tenth of a second on the UI thread."""
    folders: dict[Path, str] = {}
    keys = []
    for s in slices:
        folder = folders.get(s.path.parent)
        if folder is None:
            folder = folders[s.path.parent] = os.path.realpath(s.path.parent)
        path = os.path.join(folder, s.path.name)
        keys.append(f"{os.path.realpath(path) if os.path.islink(path) else path}#{s.frame}")
    return keys


def study_key(keys: list[str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(keys):
        digest.update(key.encode())
    return digest.hexdigest()[:24]


class ReviewStore:
    def __init__(self, slices: list[Slice], folder: Path | None = None):
        keys = slice_keys(slices)
        self.path = (folder or reviews_dir()) / f"{study_key(keys)}.json"
        self._keys = {key: i for i, key in enumerate(keys)}
        self.marks: dict[int, Mark] = {}
        self.load_error: str | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            for key, value in raw.get("marks", {}).items():
                if key in self._keys and value.get("verdict") in VERDICTS:
                    self.marks[self._keys[key]] = Mark(value["verdict"], str(value.get("note", "")))
        except (OSError, ValueError, AttributeError) as exc:
            self.load_error = f"{self.path}: review marks could not be read ({type(exc).__name__})"

    def set(self, index: int, verdict: str | None, note: str = "") -> None:
        if verdict is None:
            self.marks.pop(index, None)
        elif verdict in VERDICTS:
            self.marks[index] = Mark(verdict, note)
        else:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        self.save()

    def save(self) -> None:
        keys = {i: k for k, i in self._keys.items()}
        payload = {"version": 1, "marks": {keys[i]: asdict(m) for i, m in sorted(self.marks.items())}}
        atomic_write_text(self.path, json.dumps(payload, indent=1))
