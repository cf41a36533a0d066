"""Headers inside a compressed DICOM frame (JPEG, JPEG-LS, JPEG 2000), read and mended before any decoder runs.

Decoders trust the codestream, not the DICOM header: a damaged 2 KB frame whose JPEG header claims 32639 x 32639
made libjpeg allocate 3 GB and decode for half a minute (found by the fuzz harness). Comparing the sizes before
decoding refuses such a frame in microseconds.
"""

from __future__ import annotations

import struct

# Start-of-frame markers of the JPEG processes (not DHT C4, JPG C8, DAC CC), and JPEG-LS SOF55 (F7).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_SEQUENTIAL_DCT = {0xC0, 0xC1}  # baseline and extended (12-bit) Huffman DCT
_SOS, _EOI = 0xDA, 0xD9
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_J2K_SEARCH = 4096  # a JP2 wrapper's boxes before the codestream are small


def _header_segments(frame: bytes):
    """(marker, offset) of each JPEG header segment up to the first scan."""
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker in (_SOS, _EOI):
            return
        yield marker, pos
        pos += 2 + struct.unpack_from(">H", frame, pos + 2)[0]


def _sof(frame: bytes) -> tuple[int, int] | None:
    """(marker, offset) of the frame header."""
    return next(((marker, pos) for marker, pos in _header_segments(frame) if marker in _SOF), None)


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    sof = _sof(frame)
    if sof is None or sof[1] + 9 > len(frame):
        return None
    rows, cols = struct.unpack_from(">HH", frame, sof[1] + 5)
    return rows, cols


def _j2k_size(frame: bytes) -> tuple[int, int] | None:
    at = frame.find(_J2K_SOC_SIZ, 0, _J2K_SEARCH)
    if at < 0 or at + 24 > len(frame):
        return None
    x, y, x0, y0 = struct.unpack_from(">IIII", frame, at + 8)
    return max(0, y - y0), max(0, x - x0)


def declared_size(frame: bytes) -> tuple[int, int] | None:
    """(rows, columns) that the frame's own header declares, or None when it has no header we know."""
    if frame[:2] == b"\xff\xd8":
        return _jpeg_size(frame)
    return _j2k_size(frame)


def lacks_scan(frame: bytes) -> bool:
    """A JPEG or JPEG-LS frame with headers but no scan: decoders return a flat image for it instead of failing."""
    return frame[:2] == b"\xff\xd8" and b"\xff\xda" not in frame


def mend_sequential_scans(frame: bytes) -> bytes:
    """The frame with the spectral selection of its scans set to what sequential DCT requires (Ss 0, Se 63, Ah Al 0).

    Some encoders wrote Se 0 in sequential JPEG (pydicom's JPEG-lossy.dcm, 12-bit JPEG Extended, is one); IJG libjpeg
    and GDCM ignore the field in sequential mode, but libjpeg (pylibjpeg-libjpeg) refuses the scan ("scan start must
    be zero and scan stop must be 63"). Every other byte is kept, so a conformant frame comes back unchanged.
    """
    sof = _sof(frame) if frame[:2] == b"\xff\xd8" else None
    if sof is None or sof[0] not in _SEQUENTIAL_DCT:
        return frame
    mended = bytearray(frame)
    at = frame.find(b"\xff\xda")
    while at >= 0 and at + 5 <= len(frame):  # entropy-coded data stuffs every 0xFF, so FFDA is always a marker
        components = frame[at + 4]
        spectral = at + 5 + 2 * components
        if spectral + 3 <= len(frame):
            mended[spectral : spectral + 3] = b"\x00\x3f\x00"
        at = frame.find(b"\xff\xda", at + 2)
    return bytes(mended)
