"""The hand-read image headers agree with Pillow on every format and refuse what is broken."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from capgate.images import check_image, image_size
from capgate.model import CapgateError, ErrorCode


def encoded(size: tuple[int, int], form: str, **options: object) -> bytes:
    image = Image.new("RGBA" if form == "WEBP" else "RGB", size, (200, 30, 90, 255))
    out = io.BytesIO()
    image.save(out, format=form, **options)
    return out.getvalue()


CASES = [
    ("PNG", {}),
    ("JPEG", {}),
    ("JPEG", {"progressive": True}),
    ("GIF", {}),
    ("WEBP", {"lossless": False}),
    ("WEBP", {"lossless": True}),
    ("WEBP", {"lossless": False, "exif": b"Exif\x00\x00"}),  # VP8X: extended header
]


@pytest.mark.parametrize(("form", "options"), CASES)
@pytest.mark.parametrize("size", [(1, 1), (130, 50), (333, 77), (4000, 3)])
def test_sizes_agree_with_pillow(
    form: str, options: dict[str, object], size: tuple[int, int]
) -> None:
    data = encoded(size, form, **options)
    assert image_size(data) == Image.open(io.BytesIO(data)).size == size


@pytest.mark.parametrize(("form", "options"), CASES)
def test_a_cut_header_is_not_an_image(form: str, options: dict[str, object]) -> None:
    data = encoded((130, 50), form, **options)
    for cut in (4, 8, 11, 15, 20, 25):
        assert image_size(data[:cut]) in (None, (130, 50))  # never a made-up size
    assert image_size(data[:8]) is None


def test_other_bytes_are_refused() -> None:
    for data in (
        b"",
        b"BM" + b"\x00" * 200,
        b"\xff\xd8\xff" + b"\x00" * 200,
        b"RIFF0000WEBPXXXX" * 9,
    ):
        assert image_size(data) is None
        with pytest.raises(CapgateError) as raised:
            check_image(data.ljust(150, b"\x00"), 10_000, 10_000)
        assert raised.value.code is ErrorCode.IMAGE_TYPE_NOT_SUPPORTED


def test_a_decompression_bomb_is_refused_by_its_declared_size() -> None:
    # A small PNG whose header declares 30,000 x 30,000 pixels: nothing is decoded.
    small = encoded((130, 50), "PNG")
    bomb = small[:16] + (30_000).to_bytes(4, "big") * 2 + small[24:]
    with pytest.raises(CapgateError) as raised:
        check_image(bomb, 5_000_000, 4_000_000)
    assert raised.value.code is ErrorCode.TOO_BIG_CAPTCHA_FILESIZE
    assert "30000x30000" in raised.value.description
