"""Headers that claim more than the file holds are refused before any decoder allocates for them."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

from brainmri_desktop.core.demo import head_image
from brainmri_desktop.core.errors import UnreadableFileError
from brainmri_desktop.core.io.codestream import declared_size
from brainmri_desktop.core.io.dicom import read_dicom
from brainmri_desktop.core.io.images import read_image


def _first_frame(name: str) -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(get_testdata_file(name))
    return ds, next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm"])
def test_declared_size_matches_the_dicom_header_of_real_files(name):
    ds, frame = _first_frame(name)
    assert declared_size(frame) == (ds.Rows, ds.Columns)


def test_declared_size_of_frames_without_a_known_header_is_unknown():
    assert declared_size(b"") is None
    assert declared_size(b"\xff\xd8\xff") is None
    assert declared_size(bytes(64)) is None


def _with_first_frame(ds: pydicom.Dataset, frame: bytes, path: Path) -> Path:
    ds.PixelData = encapsulate([frame])
    ds.save_as(path)
    return path


@pytest.mark.parametrize("name,marker,size_at,packed,claim", [
    # JPEG SOF0: height and width (16 bit) 5 bytes after the marker
    ("SC_rgb_jpeg_dcmtk.dcm", b"\xff\xc0", 5, struct.pack(">HH", 32639, 32639), "32639x32639"),
    # JPEG 2000 SOC+SIZ: Xsiz and Ysiz (32 bit) 8 bytes after the markers
    ("JPEG2000.dcm", b"\xff\x4f\xff\x51", 8, struct.pack(">II", 40000, 40000), "40000x40000"),
])
def test_frame_claiming_a_huge_image_is_refused_without_decoding(tmp_path, name, marker, size_at, packed, claim):
    ds, frame = _first_frame(name)
    at = frame.index(marker) + size_at
    huge = frame[:at] + packed + frame[at + len(packed) :]
    with pytest.raises(UnreadableFileError, match=f"claims {claim} pixels but the header says"):
        read_dicom(_with_first_frame(ds, huge, tmp_path / "huge.dcm"))


@pytest.mark.parametrize("name,marker", [("MR_small_jpeg_ls_lossless.dcm", b"\xff\xf7"),
                                         ("SC_rgb_jpeg_dcmtk.dcm", b"\xff\xc0")])
def test_frame_declaring_no_rows_is_refused_without_decoding(tmp_path, name, marker):
    """Height 0 defers the size to a later marker: libjpeg then decoded a damaged JPEG-LS frame into 17 GB
    (found by the fuzz harness, killed by the kernel)."""
    ds, frame = _first_frame(name)
    at = frame.index(marker) + 5
    no_rows = frame[:at] + b"\x00\x00" + frame[at + 2 :]
    with pytest.raises(UnreadableFileError, match=r"frame 1 declares \d+x0 pixels, not decoded"):
        read_dicom(_with_first_frame(ds, no_rows, tmp_path / "no_rows.dcm"))


def _png_bytes() -> bytes:
    ok, buf = cv2.imencode(".png", head_image(48, 40, tumour=(20, 20, 5)))
    assert ok
    return buf.tobytes()


def test_intact_png_loads(tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(_png_bytes())
    assert read_image(path).pixels.shape == (48, 40)


def test_png_chunk_running_past_the_end_is_refused(tmp_path):
    data = bytearray(_png_bytes())
    idat = data.index(b"IDAT") - 4
    data[idat : idat + 4] = b"\xff\xff\xff\x4b"  # the fuzz harness's 4 GB chunk length
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match="damaged.png.*chunk runs past the end"):
        read_image(path)
    assert path.read_bytes() == bytes(data)  # the user's file is untouched


def test_png_truncated_before_its_end_is_refused(tmp_path):
    data = _png_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError, match="cut.png"):
        read_image(path)
