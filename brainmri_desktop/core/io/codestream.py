"""Image size declared inside a compressed DICOM frame (JPEG, JPEG-LS, JPEG 2000), read from its header alone.

Decoders trust the codestream, not the DICOM header: a damaged 2 KB frame whose JPEG header claims 32639 x 32639
made libjpeg allocate 3 GB and decode for half a minute (found by the fuzz harness). Comparing the sizes before
decoding refuses such a frame in microseconds.
"""

from __future__ import annotations

import struct

# Start-of-frame markers of the JPEG processes (not DHT C4, JPG C8, DAC CC), and JPEG-LS SOF55 (F7).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_SOS, _EOI = 0xDA, 0xD9
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_J2K_SEARCH = 4096  # a JP2 wrapper's boxes before the codestream are small


def _jpeg_size(frame: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker in (_SOS, _EOI):
            return None
        (length,) = struct.unpack_from(">H", frame, pos + 2)
        if marker in _SOF:
            if pos + 9 > len(frame):
                return None
            rows, cols = struct.unpack_from(">HH", frame, pos + 5)
            return rows, cols
        pos += 2 + length
    return None


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
