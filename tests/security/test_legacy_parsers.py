"""2Captcha's legacy /in.php and /res.php against hostile forms: bodies built to make a
MIME parser work hard (deep nesting, hundreds of thousands of lines), bogus charsets,
floods of parts and fields. Each must be answered at once with a legacy ERROR_... on
HTTP 200, leave /healthz answering within a second meanwhile, and store nothing."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import httpx
import pytest

from tests.security import HealthProbe
from tests.support import BOOTSTRAP_KEY, CapgateServer

pytestmark = pytest.mark.system

K = BOOTSTRAP_KEY
MULTIPART = "multipart/form-data; boundary=b0"
# Well inside the default max_request_bytes (1,000,000).
BODY_LIMIT = 1_000_000


def nested_multipart(levels: int, lines: int) -> bytes:
    """`levels` multipart/mixed parts each inside the last, then `lines` short lines."""
    out = [b"--b0\r\n"]
    for level in range(1, levels + 1):
        out.append(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level))
    out.append(b"\r\n")
    out.append(b"a\r\n" * lines)
    return b"".join(out)


def part(name: str, value: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f'--b0\r\nContent-Disposition: form-data; name="{name}"\r\n{head}\r\n'.encode()
        + value
        + b"\r\n"
    )


def post(
    server: CapgateServer, path: str, body: bytes, content_type: str, query: str = ""
) -> tuple[httpx.Response, float]:
    """POST raw bytes; the answer and how long it took."""
    started = time.monotonic()
    answer = server.http.post(
        path + query, content=body, headers={"content-type": content_type}, timeout=20
    )
    return answer, time.monotonic() - started


def assert_legacy_error(answer: httpx.Response, code: str, as_json: bool = False) -> None:
    assert answer.status_code == 200, (answer.status_code, answer.text[:300])
    if as_json:
        assert answer.json()["status"] == 0 and answer.json()["request"] == code, answer.text
    else:
        assert answer.text == code


@pytest.mark.parametrize("path", ["/in.php", "/res.php"])
def test_nested_parts_and_300k_lines_neither_stall_nor_crash(
    idle_server: CapgateServer, path: str
) -> None:
    body = nested_multipart(900, 300_000)
    assert len(body) < BODY_LIMIT
    before = idle_server.db_counts()
    with HealthProbe(idle_server.base) as probe:
        answer, seconds = post(idle_server, path, body, MULTIPART)
    assert_legacy_error(answer, "ERROR_BAD_PARAMETERS")
    assert seconds < 1.0, f"the answer took {seconds:.1f} s"
    probe.check()
    assert idle_server.db_counts() == before


def test_the_same_body_with_the_real_key_and_json_stores_nothing(
    idle_server: CapgateServer,
) -> None:
    before = idle_server.db_counts()
    query = f"?key={K}&method=post&json=1"
    answer, seconds = post(idle_server, "/in.php", nested_multipart(900, 300_000), MULTIPART, query)
    assert_legacy_error(answer, "ERROR_BAD_PARAMETERS", as_json=True)
    assert "nested" in answer.json()["error_text"]
    assert seconds < 1.0
    assert idle_server.db_counts() == before


def test_res_php_110_kb_of_nesting(idle_server: CapgateServer) -> None:
    body = nested_multipart(2000, 0)
    body += b"x" * (110_000 - len(body))
    with HealthProbe(idle_server.base) as probe:
        answer, seconds = post(
            idle_server, "/res.php", body, MULTIPART, f"?key={K}&action=get&id=1"
        )
    assert_legacy_error(answer, "ERROR_BAD_PARAMETERS")
    assert seconds < 1.0
    probe.check()


def test_1100_nesting_levels_are_a_bad_request_not_a_500(idle_server: CapgateServer) -> None:
    for path in ("/in.php", "/res.php"):
        answer, _ = post(idle_server, path, nested_multipart(1100, 1), MULTIPART, "?json=1")
        assert_legacy_error(answer, "ERROR_BAD_PARAMETERS", as_json=True)


def test_a_bogus_charset_is_a_bad_request_not_a_500(idle_server: CapgateServer) -> None:
    before = idle_server.db_counts()
    body = (
        part("key", K.encode())
        + part("method", b"post")
        + part("textinstructions", b"red", "Content-Type: text/plain; charset=no-such-charset")
        + part("file", b"\x89PNG\r\n", "Content-Type: image/png")
        + b"--b0--\r\n"
    )
    for path in ("/in.php", "/res.php"):
        answer, _ = post(idle_server, path, body, MULTIPART)
        assert_legacy_error(answer, "ERROR_BAD_PARAMETERS")
        answer, _ = post(idle_server, path, body, MULTIPART, "?json=1")
        assert_legacy_error(answer, "ERROR_BAD_PARAMETERS", as_json=True)
        assert "charset" in answer.json()["error_text"]
    assert idle_server.db_counts() == before


@pytest.mark.parametrize(
    ("what", "body"),
    [
        ("100,000 empty parts", b"--b0\r\n" * 100_000 + b"--b0--\r\n"),
        (
            "a part with 20,000 header lines",
            b"--b0\r\n" + b"X-H: v\r\n" * 20_000 + b"\r\nv\r\n--b0--\r\n",
        ),
        ("a header line of 900 kB", b"--b0\r\nX-H: " + b"v" * 900_000 + b"\r\n\r\nv\r\n--b0--\r\n"),
        ("no closing boundary", part("key", K.encode()) + part("method", b"post")),
        ("LF and CRLF mixed, 300k lines", b"--b0\n\n" + b"a\n\r\n" * 200_000 + b"--b0--\n"),
    ],
)
def test_part_floods_are_refused_at_once(
    idle_server: CapgateServer, what: str, body: bytes
) -> None:
    assert len(body) < BODY_LIMIT
    with HealthProbe(idle_server.base) as probe:
        answer, seconds = post(idle_server, "/in.php", body, MULTIPART, "?json=1")
    assert answer.status_code == 200 and answer.json()["status"] == 0, answer.text[:300]
    assert answer.json()["request"].startswith("ERROR_")
    assert seconds < 1.0, f"{what}: {seconds:.1f} s"
    probe.check()


def test_an_urlencoded_flood_of_fields_is_refused(idle_server: CapgateServer) -> None:
    body = b"&".join([b"f=1"] * 200_000)
    assert len(body) < BODY_LIMIT
    answer, seconds = post(
        idle_server, "/res.php", body, "application/x-www-form-urlencoded", "?json=1"
    )
    assert_legacy_error(answer, "ERROR_BAD_PARAMETERS", as_json=True)
    assert seconds < 1.0
    # A form of the usual size still works.
    form = {"key": K, "action": "getbalance", "json": "1"}
    answer = idle_server.http.post("/res.php", content=urlencode(form).encode(), headers={
        "content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.json() == {"status": 1, "request": "10"}


def test_json_1_in_the_body_shapes_the_error_and_the_body_is_read_once(
    idle_server: CapgateServer,
) -> None:
    body = part("key", b"f" * 32) + part("json", b"1") + b"--b0--\r\n"
    answer, _ = post(idle_server, "/res.php", body, MULTIPART, "?action=getbalance")
    assert_legacy_error(answer, "ERROR_KEY_DOES_NOT_EXIST", as_json=True)
    # A body too broken to read gets plain text, as before.
    answer, _ = post(idle_server, "/res.php", b"--b0\r\n", MULTIPART, "")
    assert_legacy_error(answer, "ERROR_BAD_PARAMETERS")
