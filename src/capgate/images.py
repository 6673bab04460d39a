"""Checks on captcha images before anything is stored: size, format, pixel dimensions."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from capgate.model import CapgateError, ErrorCode

FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
MIN_BYTES = 100  # The vendors' documented floor for a captcha file.

_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")


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
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    if not (data.startswith(_MAGIC) or is_webp):
        raise CapgateError(
            ErrorCode.IMAGE_TYPE_NOT_SUPPORTED,
            "The body is not a PNG, JPEG, GIF or WEBP image",
        )
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CapgateError(
            ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, f"The image cannot be read: {exc}"
        ) from None
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise CapgateError(
            ErrorCode.TOO_BIG_CAPTCHA_FILESIZE,
            f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted",
        )
    return width, height
