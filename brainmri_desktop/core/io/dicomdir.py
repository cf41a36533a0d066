"""DICOMDIR: the index of a DICOM medium (CD, DVD, USB export). Its image records name the files to read."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
from pydicom.fileset import FileSet

from ..errors import BrainMRIError, NotAnImageError, UnreadableFileError

DICOMDIR_NAME = "DICOMDIR"  # the name the standard gives the index file (PS3.10, 8.6)
_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
_MISSING = " does not exist: "


def is_dicomdir(path: Path) -> bool:
    """By its standard name, or by the SOP class in its file meta (a DICOMDIR copied under another name)."""
    if path.name.upper() == DICOMDIR_NAME:
        return True
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - not DICOM, or damaged: then it is not a readable DICOMDIR either
        return False
    return str(meta.get("MediaStorageSOPClassUID", "")) == _DIRECTORY_STORAGE


def referenced_images(path: Path) -> tuple[list[Path], list[BrainMRIError]]:
    """The files of the DICOMDIR's IMAGE records, in record order, and an error for each record whose file is
    missing or lies outside the DICOMDIR's folder. Raises for a DICOMDIR that cannot be read or lists no image."""
    root = path.parent.resolve()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            instances = [i for i in FileSet(pydicom.dcmread(path)) if i.node.record_type == "IMAGE"]
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a damaged directory
        raise UnreadableFileError(path, f"DICOMDIR cannot be read ({type(exc).__name__})") from None
    # pydicom drops a record whose file is missing, saying so only in a warning that ends with the file's path
    errors: list[BrainMRIError] = [
        UnreadableFileError(str(w.message).split(_MISSING, 1)[1], f"listed in {path.name} but missing")
        for w in caught if _MISSING in str(w.message)
    ]
    if not instances and not errors:
        raise NotAnImageError(path, "DICOMDIR lists no image")
    files: list[Path] = []
    for instance in instances:
        try:
            file = Path(instance.path)
            file.resolve().relative_to(root)
        except (ValueError, OSError, TypeError):
            errors.append(UnreadableFileError(path, "DICOMDIR record points outside its folder, not read"))
            continue
        if not file.is_file():
            errors.append(UnreadableFileError(file, f"listed in {path.name} but missing"))
            continue
        files.append(file)
    return files, errors
