"""A reader's agree/disagree marks and notes, kept per study in the user's data folder (never in the study folder).

The file is keyed by a hash of the study's file list, so it holds no patient data and no path in its name. Each mark
keeps who made it (the reader name set in the window, else the system user name) and when (ISO 8601 with the time
zone). A note typed without a verdict is kept as a note-only mark (verdict ""); clearing a mark forgets it and its
note. Files written before readers and times were kept (version 1) load with both empty. The reader's name is not
patient identity, but no log carries it either: it stays out of a mark's repr.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from .atomic import atomic_write_text
from .io.slices import Slice

VERDICTS = ("agree", "disagree")
NOTE_ONLY = ""  # the verdict of a mark that holds only a note
FILE_VERSION = 2  # 1: verdict and note only


@dataclass(frozen=True)
class Mark:
    verdict: str  # agree | disagree | NOTE_ONLY
    note: str = ""
    reader: str = field(default="", repr=False)  # "" in files written before readers were kept
    time: str = ""  # when the mark was last changed, ISO 8601 with the time zone; "" in version 1 files
    model: str = field(default="", compare=False)  # the id of the model whose result was on screen; "" when unknown

    @property
    def when(self) -> str:
        """The time for a reader: date, hours and minutes, and the zone."""
        try:
            return datetime.fromisoformat(self.time).strftime("%Y-%m-%d %H:%M %z")
        except ValueError:
            return ""

    @property
    def byline(self) -> str:
        """'by <reader>, <when>', or what of it is known."""
        parts = [f"by {self.reader}" if self.reader else "", self.when]
        return ", ".join(p for p in parts if p) or "reader and time not recorded"


def system_reader() -> str:
    """The system user name; "" when the system knows none (getpass raises KeyError or OSError then)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class Reviews:
    """The marks of one series, kept in memory only; `ReviewStore` also writes them to disk. The rules of marking,
    noting and clearing live here."""

    def __init__(self) -> None:
        self.marks: dict[int, Mark] = {}

    def set(self, index: int, verdict: str | None, note: str = "", reader: str | None = None, model: str = "") -> None:
        """Records a verdict with its note and the model whose result it judged (None clears the mark); raises
        OSError when it could not be saved (it is kept in memory)."""
        if verdict is None:
            self.clear(index)
            return
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}")
        self._put(index, Mark(verdict, note, system_reader() if reader is None else reader, now(), model))

    def set_note(self, index: int, note: str, reader: str | None = None, model: str = "") -> None:
        """The note as typed: the verdict stays (none: a note-only mark); an empty note on a note-only mark clears it.
        Unchanged text changes nothing, neither the reader nor the time."""
        old = self.marks.get(index)
        if (old.note if old else "") == note:
            return
        if not note and (old is None or old.verdict == NOTE_ONLY):
            self.clear(index)
            return
        verdict = old.verdict if old else NOTE_ONLY
        self._put(index, Mark(verdict, note, system_reader() if reader is None else reader, now(),
                              model if old is None or old.verdict == NOTE_ONLY else old.model))

    def clear(self, index: int) -> None:
        if self.marks.pop(index, None) is not None:
            self.save()

    def _put(self, index: int, mark: Mark) -> None:
        self.marks[index] = mark
        self.save()

    def save(self) -> None:
        """Nothing to write: these marks live as long as the session."""


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


def reviews_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path("BrainMRI", appauthor=False) / "reviews"


def _mark_from(value: dict) -> Mark | None:
    """A mark read from a file of either version; None for one that holds nothing valid."""
    verdict, note = value.get("verdict"), str(value.get("note", ""))
    if verdict not in VERDICTS and not (verdict == NOTE_ONLY and note):
        return None
    return Mark(verdict, note, str(value.get("reader", "")), str(value.get("time", "")), str(value.get("model", "")))


class ReviewStore(Reviews):
    """The marks of one study, written atomically after every change."""

    def __init__(self, slices: list[Slice], folder: Path | None = None):
        super().__init__()
        keys = slice_keys(slices)
        self.path = (folder or reviews_dir()) / f"{study_key(keys)}.json"
        self._keys = {key: i for i, key in enumerate(keys)}
        self.load_error: str | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            for key, value in raw.get("marks", {}).items():
                if key in self._keys and (mark := _mark_from(value)) is not None:
                    self.marks[self._keys[key]] = mark
        except (OSError, ValueError, AttributeError) as exc:
            self.load_error = f"{self.path}: review marks could not be read ({type(exc).__name__})"

    def save(self) -> None:
        keys = {i: k for k, i in self._keys.items()}
        payload = {"version": FILE_VERSION, "marks": {keys[i]: asdict(m) for i, m in sorted(self.marks.items())}}
        atomic_write_text(self.path, json.dumps(payload, indent=1))
