"""Writing files and folders so that a crash or a full disk never leaves a half-written one: temporary file (or
folder), flush to disk, rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _write_synced(f, data: bytes) -> None:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(f)` fills the file (np.savez, say, streaming what would not fit in memory twice); a temporary name of
    this process's own, so two processes writing the same path at once each leave a whole file."""
    path = Path(path)
    if path.exists() and not path.is_file():
        # a device, pipe or terminal (`--out /dev/null`, `/dev/stdout`, a FIFO): renaming over it would put a file
        # where the device was (as root, /dev/null itself), so it is written in place; a folder fails to open
        with open(path, "wb") as f:
            write(f)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_folder(target: Path, contents: dict[str, bytes]) -> None:
    """A folder holding exactly `contents` (file name -> bytes), replacing any folder there (see `atomic_folder`)."""
    with atomic_folder(target) as tmp:
        for name, data in contents.items():
            with open(tmp / name, "wb") as f:
                _write_synced(f, data)


@contextmanager
def atomic_folder(target: Path, scratch: Path | None = None) -> Iterator[Path]:
    """A temporary folder to fill, file by file as the data arrives (a series retrieved from a PACS need not fit in
    memory); when the block ends without an exception it replaces any folder at `target`, so a reader sees the old
    folder or the new one, and otherwise it is removed. `scratch` holds the temporary folder (default: beside the
    target; it must be on the same file system), for a caller that sweeps what a killed process left there."""
    target = Path(target)
    scratch = Path(scratch) if scratch is not None else target.parent
    scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=scratch))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model package is meant to be read by every user of the machine
    try:
        yield tmp
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
