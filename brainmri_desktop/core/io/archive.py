"""Zip files read in place: members are read into memory one at a time, nothing is extracted anywhere.

A member is shown as a path inside the archive (`study.zip/inner/a.png`), so lists, CSV rows and errors name it.
The central directory is checked before anything is decompressed: member count, declared sizes and compression
ratios are bounded (zip bombs), and encrypted, nested, linked or escaping members are refused by name.
"""

from __future__ import annotations

import lzma
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import BrainMRIError, UnreadableFileError, UnsupportedError

MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 1 << 30  # one member (a large multi-frame DICOM) once decompressed
MAX_TOTAL_BYTES = 4 << 30  # all members together
MAX_RATIO = 200  # deflate reaches ~1000:1 only on degenerate data; real images stay far below
_RATIO_FROM_BYTES = 1 << 20  # small members may compress well without harm

ZIP_SUFFIX = ".zip"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty archive
_SKIPPED_PARTS = ("__MACOSX",)  # resource forks a Mac adds beside every member


def is_zip(path: Path, head: bytes = b"") -> bool:
    """A zip by name, or by its first bytes where the name says nothing."""
    return path.suffix.lower() == ZIP_SUFFIX or head[:4] in _ZIP_MAGIC


@dataclass
class ZipListing:
    """The members of one archive worth reading, and those refused with their reason."""

    archive: Path
    members: list[zipfile.ZipInfo] = field(default_factory=list)
    refused: list[BrainMRIError] = field(default_factory=list)

    def path_of(self, member: zipfile.ZipInfo) -> Path:
        return self.archive / member.filename.lstrip("/\\")

    def read(self) -> Iterator[tuple[Path, bytes | BrainMRIError]]:
        """(member path, its bytes or the error that stopped it), member by member, the archive opened once."""
        try:
            with zipfile.ZipFile(self.archive) as zf:
                for member in self.members:
                    yield self.path_of(member), _read_member(zf, member, self.path_of(member))
        except (OSError, zipfile.BadZipFile) as exc:
            raise UnreadableFileError(self.archive, f"zip archive cannot be read ({type(exc).__name__})") from None


def _read_member(zf: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> bytes | BrainMRIError:
    try:
        with zf.open(member) as f:  # stops at the declared size and checks the CRC at the end
            return f.read(member.file_size + 1)
    except NotImplementedError:
        return UnsupportedError(path, f"zip member compressed with an unsupported method ({member.compress_type})")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:  # zlib: the fuzzer
        return UnreadableFileError(path, f"damaged zip member ({type(exc).__name__}: {str(exc)[:80]})")


def _member_problem(member: zipfile.ZipInfo) -> str | None:
    name = member.filename
    if not name:
        return "zip member without a name (damaged directory entry), not read"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        return "zip member with a path outside the archive (absolute or '..'), not read"
    if member.flag_bits & 0x1:
        return "encrypted (password-protected) zip member, not read: the password cannot be asked for"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "zip member is a link, not read"
    if PurePosixPath(name).suffix.lower() == ZIP_SUFFIX:
        return "zip inside a zip, not opened: open the inner archive on its own"
    if member.file_size > MAX_MEMBER_BYTES:
        return f"zip member too large once decompressed ({member.file_size >> 20} MiB, limit {MAX_MEMBER_BYTES >> 20})"
    ratio = member.file_size / max(member.compress_size, 1)
    if member.file_size > _RATIO_FROM_BYTES and ratio > MAX_RATIO:
        return f"zip member compressed {ratio:.0f}:1 (a zip bomb?), not read"
    return None


def list_zip(archive: Path, skip: Callable[[str], bool]) -> ZipListing:
    """The archive's readable members in their natural order; `skip(name)` drops members quietly (notes, hidden
    files) the way a folder walk does. Raises for an archive that cannot be opened or exceeds the limits."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile:
        raise UnreadableFileError(archive, "not a valid zip archive (damaged, truncated or not a zip)") from None
    except OSError as exc:
        raise UnreadableFileError(archive, f"cannot be read ({exc.strerror or exc})") from None
    if len(infos) > MAX_MEMBERS:
        raise UnreadableFileError(archive, f"zip archive with {len(infos)} members (limit {MAX_MEMBERS}), not opened")
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL_BYTES:
        raise UnreadableFileError(
            archive, f"zip archive would decompress to {total >> 20} MiB (limit {MAX_TOTAL_BYTES >> 20}), not opened")
    listing = ZipListing(archive)
    for info in infos:
        if info.filename and info.is_dir():  # an empty name (damaged directory) is refused below
            continue
        problem = _member_problem(info)
        parts = PurePosixPath(info.filename).parts
        if problem is None and (any(p in _SKIPPED_PARTS or p.startswith(".") for p in parts) or skip(parts[-1])):
            continue
        if problem:
            listing.refused.append(UnreadableFileError(listing.path_of(info), problem))
        else:
            listing.members.append(info)
    return listing
