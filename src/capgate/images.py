"""Checks on captcha images before anything is stored: size, format, pixel dimensions.

The dimensions come from each format's header, read here by hand: opening the image with
Pillow cost about 150 µs a createTask, more than storing the task. Nothing is decoded, so
a decompression bomb is refused by its declared size before any pixel exists; the solver
decodes the image later, and a body that only looks like an image fails there, as
unsolvable, refunded.
"""

from __future__ import annotations

import struct

from capgate.model import CapgateError, ErrorCode

MIN_BYTES = 100  # The vendors' documented floor for a captcha file.

# JPEG start-of-frame markers (they carry the dimensions): C0-CF but DHT, JPG and DAC.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """Validate an uploaded captcha image and return its (width, height).

    Only the header is read: a decompression bomb is refused by its declared size before
    any pixel is decoded.
    """
    if len(data) < MIN_BYTES:
        raise CapgateError(
            ErrorCode.ZERO_CAPTCHA_FILESIZE,
            f"The image is {len(data)} bytes; a captcha image has at least {MIN_BYTES}",
        )
    if len(data) > max_bytes:
        raise CapgateError(
            ErrorCode.TOO_BIG_CAPTCHA_FILESIZE,
            f"The image is {len(data)} bytes; at most {max_bytes} are accepted",
        )
    size = image_size(data)
    if size is None:
        raise CapgateError(
            ErrorCode.IMAGE_TYPE_NOT_SUPPORTED,
            "The body is not a readable PNG, JPEG, GIF or WEBP image",
        )
    width, height = size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise CapgateError(
            ErrorCode.TOO_BIG_CAPTCHA_FILESIZE,
            f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted",
        )
    return width, height


# What image_format answers, which is also the file suffix each is kept under.
IMAGE_FORMATS = ("png", "gif", "jpg", "webp")


def image_format(data: bytes) -> str | None:
    """'png', 'gif', 'jpg' or 'webp' from the first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF or WEBP header; None for anything else."""
    kind = image_format(data)
    try:
        if kind == "png":
            if data[12:16] != b"IHDR":
                return None
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if kind == "gif":
            width, height = struct.unpack("<HH", data[6:10])
            return width, height
        if kind == "jpg":
            return _jpeg_size(data)
        if kind == "webp":
            return _webp_size(data)
    except struct.error:  # A header cut short.
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # Fill byte.
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # No length field.
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if length < 2:
            return None
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker == 0xDA:  # Image data before any frame header.
            return None
        at += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk, payload = data[12:16], data[20:30]
    if len(payload) < 10:
        return None
    if chunk == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and payload[:1] == b"\x2f":
        (bits,) = struct.unpack("<I", payload[1:5])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(payload[4:7], "little") + 1
        height = int.from_bytes(payload[7:10], "little") + 1
        return width, height
    return None
