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


def animation(form: str, frames: int, size: tuple[int, int] = (60, 30)) -> bytes:
    images = [Image.new("RGB", size, (i * 4, 255 - i * 4, i * 50 % 256)) for i in range(frames)]
    out = io.BytesIO()
    options = {"lossless": True} if form == "WEBP" else {}  # Lossy merges similar frames.
    images[0].save(
        out, format=form, save_all=True, append_images=images[1:], duration=50, **options
    )
    return out.getvalue()


@pytest.mark.parametrize("form", ["GIF", "PNG", "WEBP"])
def test_real_animations_are_read_like_pillow_reads_them(form: str) -> None:
    data = animation(form, 64)
    assert image_size(data) == Image.open(io.BytesIO(data)).size == (60, 30)
    assert check_image(data, 600_000, 4_000_000) == (60, 30)
    with pytest.raises(CapgateError) as raised:
        check_image(animation(form, 65), 600_000, 4_000_000)
    assert raised.value.code is ErrorCode.TOO_BIG_CAPTCHA_FILESIZE
    assert "frames" in raised.value.description


def test_a_gif_frame_hidden_behind_stray_bytes_still_counts() -> None:
    # Pillow skips a byte that starts no block, and reads the frame after it.
    small = encoded((130, 50), "GIF")
    frame = b"\x2c" + (0).to_bytes(4, "little") + (20_000).to_bytes(2, "little") * 2 + b"\x00"
    crafted = small[:-1] + b"\x00\x07" + frame + b"\x02\x01\x2c\x00\x3b"
    assert image_size(crafted) == (20_000, 20_000)
    with pytest.raises(CapgateError) as raised:
        check_image(crafted, 600_000, 4_000_000)
    assert raised.value.code is ErrorCode.TOO_BIG_CAPTCHA_FILESIZE


def test_jpeg_markers_without_a_length_are_stepped_over_not_skipped() -> None:
    # An end-of-image marker has no length: what follows it is still read, as Pillow does.
    small = encoded((130, 50), "JPEG")
    big_sof = b"\xff\xc0\x00\x11\x08" + (9000).to_bytes(2, "big") * 2 + b"\x03" + b"\x00" * 9
    scan = small.index(b"\xff\xda")
    crafted = small[:scan] + b"\xff\xd9" + big_sof + small[scan:]
    assert image_size(crafted) == (9000, 9000)
    # Bytes Pillow would pass over as junk are refused instead.
    assert image_size(small[:scan] + b"\xff\x00" + small[scan:]) is None
    assert image_size(small[:scan] + b"\x00" + small[scan:]) is None


def test_a_file_broken_into_endless_pieces_is_refused_quickly() -> None:
    screen = b"GIF89a" + (100).to_bytes(2, "little") * 2 + b"\x00\x00\x00"
    frame = b"\x2c" + b"\x00" * 4 + (100).to_bytes(2, "little") * 2 + b"\x00\x02"
    for data in (
        screen + frame + b"\x01\x00" * 200_000 + b"\x00\x3b",  # one-byte sub-blocks
        screen + b"\x21\xfe\x00" * 100_000,  # empty extensions
        b"\xff\xd8" + b"\xff\xfe\x00\x02" * 100_000,  # empty JPEG comments
        encoded((130, 50), "PNG")[:33] + b"\x00\x00\x00\x00tEXt\x00\x00\x00\x00" * 40_000,
    ):
        assert image_size(data) is None
