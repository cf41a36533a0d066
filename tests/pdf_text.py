"""The text of a PDF written by matplotlib, for tests: its content streams inflated and the strings of every text-showing
operator joined. matplotlib kerns each line into pieces (`[(B) 20 (rainMRI)] TJ`), so raw bytes never hold a phrase."""

from __future__ import annotations

import re
import zlib

# matplotlib writes b"stream\n" + data + b"\nendstream": an optional \r here would eat a compressed stream's last byte
# when it happens to be 0x0d (about one stream in 256), losing that page's text at random.
_STREAM = re.compile(rb"stream\n(.*?)\nendstream", re.S)
_SHOW = re.compile(rb"\[((?:\\.|[^\]\\])*)\]\s*TJ|\(((?:\\.|[^)\\])*)\)\s*Tj", re.S)
_STRING = re.compile(rb"\(((?:\\.|[^)\\])*)\)", re.S)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _unescape(raw: bytes) -> bytes:
    def one(m: re.Match) -> bytes:
        tail = m.group(1)
        if tail[:1].isdigit():
            return bytes([int(tail, 8)])
        return _ESCAPES.get(tail, tail)

    return re.sub(rb"\\([0-7]{1,3}|.)", one, raw, flags=re.S)


def pdf_text(data: bytes) -> str:
    """Every shown string, one text operator per line, decoded as matplotlib encodes Type 3 text (cp1252)."""
    lines = []
    for stream in _STREAM.findall(data):
        try:
            stream = zlib.decompress(stream)
        except zlib.error:
            pass  # an uncompressed stream
        for array, single in _SHOW.findall(stream):
            pieces = _STRING.findall(array) if array else [single]
            lines.append(b"".join(_unescape(p) for p in pieces).decode("cp1252", "replace"))
    return "\n".join(lines)
