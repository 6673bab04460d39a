"""Images whose headers lie about their size are refused at createTask, before anything is
stored: every frame's declared size counts, not only the one the file starts with."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from tests.support import BOOTSTRAP_KEY, CapgateServer, image_task

pytestmark = pytest.mark.system

# Clear code then end code, in 3-bit LZW codes (minimum code size 2): a frame with no pixels
# in it, which a decoder still allocates at the declared size.
_EMPTY_LZW = b"\x02\x01\x2c\x00"


def gif(screen: tuple[int, int], frames: list[tuple[int, int, int, int]]) -> bytes:
    """A GIF89a with this logical screen and these (left, top, width, height) frames."""
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", *screen, 0, 0, 0))
    out += b"\x21\xfe" + bytes([90]) + b"c" * 90 + b"\x00"  # a comment: over 100 bytes
    for left, top, width, height in frames:
        out += b"\x2c" + struct.pack("<HHHHB", left, top, width, height, 0) + _EMPTY_LZW
    return bytes(out + b"\x3b")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def apng(frames: int) -> bytes:
    """A real 20x20 PNG whose acTL says it animates this many frames."""
    out = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(out, "PNG")
    data = out.getvalue()
    return data[:33] + png_chunk(b"acTL", struct.pack(">II", frames, 0)) + data[33:]


def jpeg_with_second_frame_header(size: tuple[int, int]) -> bytes:
    """A real 20x20 JPEG with another start-of-frame, declaring `size`, before its scan."""
    out = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(out, "JPEG")
    data = out.getvalue()
    scan = data.index(b"\xff\xda")
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, size[1], size[0], 3)
    sof += b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return data[:scan] + sof + data[scan:]


def webp_animated(canvas: tuple[int, int], frames: list[tuple[int, int, int, int]]) -> bytes:
    """An extended (VP8X) WebP with this canvas and these (x, y, width, height) ANMF frames."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)

    def u24(value: int) -> bytes:
        return value.to_bytes(3, "little")

    body = chunk(b"VP8X", b"\x02\x00\x00\x00" + u24(canvas[0] - 1) + u24(canvas[1] - 1))
    body += chunk(b"ANIM", b"\xff\xff\xff\xff\x00\x00")
    for x, y, width, height in frames:
        header = u24(x // 2) + u24(y // 2) + u24(width - 1) + u24(height - 1) + u24(100) + b"\x00"
        body += chunk(b"ANMF", header + chunk(b"VP8L", b"\x2f" + b"\x00" * 40))
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


BOMBS = {
    # The bomb: the screen says 100x100, the frame 13000x13000.
    "GIF frame larger than its screen": gif((100, 100), [(0, 0, 13000, 13000)]),
    "GIF frame placed far outside its screen": gif((100, 100), [(12000, 12000, 1000, 1000)]),
    "GIF second frame larger": gif((100, 100), [(0, 0, 100, 100), (0, 0, 13000, 13000)]),
    "GIF with too many frames": gif((100, 100), [(0, 0, 10, 10)] * 65),
    "JPEG with a second, larger frame header": jpeg_with_second_frame_header((13000, 13000)),
    "APNG with too many frames": apng(65),
    "WebP frame outside its canvas": webp_animated((100, 100), [(0, 0, 13000, 13000)]),
    "WebP with too many frames": webp_animated((100, 100), [(0, 0, 10, 10)] * 65),
}


def test_images_whose_headers_lie_are_refused_and_nothing_is_stored(
    idle_server: CapgateServer,
) -> None:
    before = idle_server.db_counts()
    for name, data in BOMBS.items():
        body = base64.b64encode(data).decode()
        answer = idle_server.post(
            "/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
        )
        assert answer.get("errorCode") == "ERROR_TOO_BIG_CAPTCHA_FILESIZE", (name, answer)
        legacy = idle_server.http.post(
            "/in.php", data={"key": BOOTSTRAP_KEY, "method": "base64", "body": body}
        )
        assert legacy.text == "ERROR_TOO_BIG_CAPTCHA_FILESIZE", (name, legacy.text)
    assert idle_server.db_counts() == before


def test_honest_animations_are_still_taken(idle_server: CapgateServer) -> None:
    frames = [Image.new("RGB", (60, 30), color) for color in ("white", "gray", "black")]
    for form in ("GIF", "PNG", "WEBP"):
        out = io.BytesIO()
        frames[0].save(out, form, save_all=True, append_images=frames[1:], duration=100)
        body = base64.b64encode(out.getvalue()).decode()
        answer = idle_server.post(
            "/createTask", {"clientKey": BOOTSTRAP_KEY, "task": image_task(body)}
        )
        assert answer["errorId"] == 0, (form, answer)
