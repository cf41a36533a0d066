"""PNG, JPEG, TIFF and BMP files: 8- or 16-bit, grey, RGB or RGBA, read as one greyscale slice."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from ..errors import UnreadableFileError
from .slices import SeriesInfo, Slice

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})

# Refuse absurd sizes before decoding: a corrupt header can claim gigapixels.
MAX_PIXELS = 64 * 1024 * 1024


def to_grey(image: np.ndarray) -> np.ndarray:
    """Greyscale of a decoded image in OpenCV's channel order, alpha dropped, bit depth kept."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2GRAY)
    raise ValueError(f"unexpected image shape {image.shape}")


def _header_size(data: bytes) -> tuple[int, int]:
    """The size a file's header claims, read without decoding (Pillow reads headers lazily), so that a damaged
    header cannot make the decoder allocate gigabytes; (0, 0) when Pillow cannot tell and OpenCV will decide."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 0, 0


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks_fit(data: bytes) -> bool:
    """Whether every chunk of a PNG lies inside the file. OpenCV 5 allocates a chunk's claimed length before
    reading it, so a damaged length field cost 4 GB and seconds (found by the fuzz harness)."""
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if length > len(data) - pos - 12:  # length, type and CRC around the payload
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos += 12 + length
    return False


def read_image(path: Path, series: SeriesInfo | None = None, data: bytes | None = None) -> Slice:
    """One image file, or its bytes (a zip member shown as `path`)."""
    path = Path(path)
    try:
        data = path.read_bytes() if data is None else data
    except OSError as exc:
        raise UnreadableFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise UnreadableFileError(path, "empty file")
    if data.startswith(_PNG_SIGNATURE) and not _png_chunks_fit(data):
        raise UnreadableFileError(path, "damaged or truncated PNG (a chunk runs past the end of the file)")
    width, height = _header_size(data)
    if width * height > MAX_PIXELS:
        raise UnreadableFileError(path, f"image too large ({width}x{height})")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # OpenCV asserts on headers that claim absurd sizes
        raise UnreadableFileError(path, "not a readable image (header claims an impossible size)") from None
    if image is None or image.size == 0:
        raise UnreadableFileError(path, "not a readable image (corrupt, truncated or not an image format)")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise UnreadableFileError(path, f"image too large ({image.shape[1]}x{image.shape[0]})")
    if image.dtype not in (np.uint8, np.uint16):
        image = image.astype(np.float32)
    try:
        grey = to_grey(image)
    except ValueError as exc:
        raise UnreadableFileError(path, str(exc)) from None
    if min(grey.shape) < 8:
        raise UnreadableFileError(path, f"image too small ({grey.shape[1]}x{grey.shape[0]})")
    return Slice(path=path, pixels=np.ascontiguousarray(grey), series=series)
