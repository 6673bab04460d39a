"""Checks on captcha images before anything is stored: size, format, pixel dimensions.

The dimensions come from each format's headers, read here by hand: opening the image with
Pillow cost about 150 µs a createTask, more than storing the task. Nothing is decoded, so
a decompression bomb is refused by its declared size before any pixel exists. Every frame
header counts, not only the first one: a GIF whose screen says 100x100 but whose frame says
13000x13000 is decoded at 13000x13000. The walk over a file's blocks is linear and stops
past MAX_FRAMES. The solver decodes the image later, and a body that only looks like an
image fails there, as unsolvable, refunded.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from capgate.model import CapgateError, ErrorCode

MIN_BYTES = 100  # The vendors' documented floor for a captcha file.
# Frames an animated image may declare: the solver reads only the first.
MAX_FRAMES = 64
# Bounds on the walk, far above what real files hold (a 600 KB GIF has about 2,400
# sub-blocks; the other formats a few dozen chunks before their image data): past them a
# file is refused as unreadable, so a crafted one costs at most a few milliseconds.
MAX_SEGMENTS = 1000
MAX_GIF_SUB_BLOCKS = 20_000

# JPEG markers Pillow reads a frame size from: C0-CF but DHT, JPG and DAC, and DHP.
_SOF = (frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}) | {0xDE}
# JPEG markers with no length field (Pillow reads nothing after them): JPG, TEM, RSTn,
# SOI, EOI and JPGn.
_BARE = frozenset({0xC8, 0x01, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})
# The bytes that start a GIF block: extension, image descriptor, trailer.
_GIF_BLOCK = re.compile(b"[\x21\x2c\x3b]")


class Header(NamedTuple):
    """What an image's headers declare: the canvas a decoder allocates, and its frames."""

    width: int
    height: int
    frames: int


def check_image(data: bytes, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """Validate an uploaded captcha image and return its (width, height).

    Only headers are read: a decompression bomb is refused by its declared size before
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
    header = image_header(data)
    if header is None:
        raise CapgateError(
            ErrorCode.IMAGE_TYPE_NOT_SUPPORTED,
            "The body is not a readable PNG, JPEG, GIF or WEBP image",
        )
    width, height, frames = header
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise CapgateError(
            ErrorCode.TOO_BIG_CAPTCHA_FILESIZE,
            f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted",
        )
    if frames > MAX_FRAMES:
        raise CapgateError(
            ErrorCode.TOO_BIG_CAPTCHA_FILESIZE,
            f"The image has over {MAX_FRAMES} frames; at most {MAX_FRAMES} are accepted",
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
    header = image_header(data)
    return None if header is None else (header.width, header.height)


def image_header(data: bytes) -> Header | None:
    """The canvas every frame header together declares, and the frame count; None for
    anything but a PNG, JPEG, GIF or WEBP whose headers can be read."""
    kind = image_format(data)
    try:
        if kind == "png":
            return _png_header(data)
        if kind == "gif":
            return _gif_header(data)
        if kind == "jpg":
            return _jpeg_header(data)
        if kind == "webp":
            return _webp_header(data)
    except (struct.error, IndexError):  # A header cut short.
        return None
    return None


def _png_header(data: bytes) -> Header | None:
    # IHDR is the canvas (decoders refuse APNG frames outside it); an acTL before the
    # image data declares the frames.
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    frames = 1
    at = 8
    for _ in range(MAX_SEGMENTS):
        if at + 8 > len(data):
            return Header(width, height, frames)
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind in (b"IDAT", b"IEND"):
            return Header(width, height, frames)
        if kind == b"acTL":
            (frames,) = struct.unpack_from(">I", data, at + 8)
        at += 12 + length
    return None


def _gif_header(data: bytes) -> Header | None:
    # Walks the blocks as Pillow does: a byte that starts no block is skipped (so a frame
    # cannot hide behind one), and a frame past the logical screen grows the canvas.
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    sub_blocks = 0
    end = len(data)
    for _ in range(MAX_SEGMENTS):
        found = _GIF_BLOCK.search(data, at)
        if found is None or data[found.start()] == 0x3B:  # The end, or the trailer.
            return Header(width, height, frames)
        at = found.start()
        if data[at] == 0x21:  # Extension: a label, then sub-blocks.
            at += 2
        else:  # Image descriptor: left, top, width, height, flags; then sub-blocks.
            left, top, w, h, flags = struct.unpack_from("<HHHHB", data, at + 1)
            frames += 1
            if frames > MAX_FRAMES:
                return Header(width, height, frames)
            width, height = max(width, left + w), max(height, top + h)
            at += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # + LZW code size
        while at < end:  # Sub-blocks: a length byte, then that many; an empty one ends.
            length = data[at]
            at += 1 + length
            sub_blocks += 1
            if length == 0:
                break
            if sub_blocks > MAX_GIF_SUB_BLOCKS:
                return None
    return None


def _jpeg_header(data: bytes) -> Header | None:
    # Pillow takes the last frame header before the scan, so every one counts; bytes it
    # would skip as junk are refused here rather than guessed at.
    size: tuple[int, int] | None = None
    at = 2
    for _ in range(MAX_SEGMENTS):
        if at + 2 > len(data) or data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # Fill byte.
            at += 1
            continue
        if marker in _BARE:
            at += 2
            continue
        if marker == 0x00:
            return None
        (length,) = struct.unpack_from(">H", data, at + 2)
        if length < 2:
            return None
        if marker in _SOF:
            h, w = struct.unpack_from(">HH", data, at + 5)
            size = (w, h) if size is None else (max(size[0], w), max(size[1], h))
        if marker == 0xDA:  # Start of scan: the headers are over.
            return None if size is None else Header(*size, 1)
        at += 2 + length
    return None


def _webp_header(data: bytes) -> Header | None:
    chunk, payload = data[12:16], data[20:30]
    if len(payload) < 10:
        return None
    if chunk == b"VP8 " and payload[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", payload[6:10])
        return Header(width & 0x3FFF, height & 0x3FFF, 1)
    if chunk == b"VP8L" and payload[:1] == b"\x2f":
        (bits,) = struct.unpack("<I", payload[1:5])
        return Header((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 1)
    if chunk == b"VP8X":
        return _webp_extended(data, payload)
    return None


def _webp_extended(data: bytes, vp8x: bytes) -> Header | None:
    # The VP8X canvas, grown by any animation frame (ANMF) that lies outside it.
    width = int.from_bytes(vp8x[4:7], "little") + 1
    height = int.from_bytes(vp8x[7:10], "little") + 1
    frames = 0
    at = 12
    for _ in range(MAX_SEGMENTS):
        if at + 8 > len(data) or frames > MAX_FRAMES:
            return Header(width, height, max(frames, 1))
        kind = data[at : at + 4]
        (length,) = struct.unpack_from("<I", data, at + 4)
        if kind == b"ANMF" and at + 20 <= len(data):
            frames += 1
            x = 2 * int.from_bytes(data[at + 8 : at + 11], "little")
            y = 2 * int.from_bytes(data[at + 11 : at + 14], "little")
            w = int.from_bytes(data[at + 14 : at + 17], "little") + 1
            h = int.from_bytes(data[at + 17 : at + 20], "little") + 1
            width, height = max(width, x + w), max(height, y + h)
        at += 8 + length + (length & 1)
    return None
