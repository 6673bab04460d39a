"""2Captcha's legacy dialect (/in.php, /res.php): the SDK's plain-text contract and json=1."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from capgate.dialects import twocaptcha_legacy as legacy
from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Solution,
    Task,
    TaskStatus,
    TaskType,
)
from tests.support import make_task

# Bytes a naive multipart parser would mangle: CR, LF, CRLF, a fake boundary, high bytes.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--boundary\r\n\n\r" + b"\x00" * 40 + b"\r\n"


def task(status: TaskStatus, task_type: TaskType = TaskType.IMAGE_TO_TEXT, **kw: Any) -> Task:
    return make_task(
        status,
        task_type,
        **{
            "id": 74372499131,
            "created_at": 1692863536.4,
            "cost": 2990,
            "ip": "1.2.3.4",
            "attempts": 0,
            **kw,
        },
    )


def multipart(fields: dict[str, str], files: dict[str, tuple[str | None, bytes]]) -> bytes:
    """A multipart/form-data body built by hand, boundary `XyZ`, as browsers send it."""
    out = b""
    for name, value in fields.items():
        out += b"--XyZ\r\n"
        out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, (filename, data) in files.items():
        out += b"--XyZ\r\n"
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    return out + b"--XyZ--\r\n"


MULTIPART = b"multipart/form-data; boundary=XyZ"
FORM = b"application/x-www-form-urlencoded"


# --- parse_form ------------------------------------------------------------------------------


def test_query_only() -> None:
    form = legacy.parse_form(None, b"key=k&action=get&id=5&json=1", b"")
    assert form == {"key": "k", "action": "get", "id": "5", "json": "1"}


def test_urlencoded_body_merges_with_query() -> None:
    form = legacy.parse_form(
        FORM + b"; charset=utf-8", b"json=1&key=old", b"key=k&method=base64&body=aGV%2Bsb%2FG8%3D"
    )
    assert form == {"json": "1", "key": "k", "method": "base64", "body": "aGV+sb/G8="}


def test_urlencoded_body_without_content_type() -> None:
    assert legacy.parse_form(None, b"", b"key=k&action=getbalance") == {
        "key": "k",
        "action": "getbalance",
    }


def test_multipart_hand_built() -> None:
    body = multipart(
        {"key": "k", "method": "post", "textinstructions": "type the red ones, ça va"},
        {"file": ("captcha.png", PNG)},
    )
    form = legacy.parse_form(MULTIPART, b"json=1", body)
    assert form == {
        "json": "1",
        "key": "k",
        "method": "post",
        "textinstructions": "type the red ones, ça va",
        "file": PNG,
    }


def test_multipart_file_without_filename_stays_bytes() -> None:
    form = legacy.parse_form(MULTIPART, b"", multipart({"key": "k"}, {"file": (None, PNG)}))
    assert form["file"] == PNG


def test_multipart_as_requests_encodes_it() -> None:
    """The exact body 2captcha-python's `requests.post(data=..., files={'file': f})` sends."""
    prepared = requests.Request(
        "POST",
        "https://2captcha.com/in.php",
        data={"key": "k", "method": "post", "regsense": 1, "softId": 4580},
        files={"file": ("captcha.png", PNG)},
    ).prepare()
    assert isinstance(prepared.body, bytes)
    form = legacy.parse_form(prepared.headers["Content-Type"].encode(), b"", prepared.body)
    assert form == {"key": "k", "method": "post", "regsense": "1", "softId": "4580", "file": PNG}


def test_json_body_is_tolerated() -> None:
    form = legacy.parse_form(
        b"application/json",
        b"",
        b'{"key":"k","method":"turnstile","json":1,"invisible":true,"x":null,"y":[1]}',
    )
    assert form == {"key": "k", "method": "turnstile", "json": "1", "invisible": "1"}


def test_other_content_types_ignore_the_body() -> None:
    assert legacy.parse_form(b"text/plain", b"key=k", b"garbage") == {"key": "k"}


@pytest.mark.parametrize(
    "content_type", [b"text/plain;charset=UTF-8", None, b"application/x-www-form-urlencoded"]
)
def test_a_json_object_is_read_whatever_its_declared_type(content_type: bytes | None) -> None:
    """node-fetch labels a string body text/plain; the `2captcha` npm package sends JSON so."""
    body = b' {"key":"k","method":"base64","body":"aGk=","json":1}'
    form = legacy.parse_form(content_type, b"", body)
    assert form == {"key": "k", "method": "base64", "body": "aGk=", "json": "1"}


def test_is_russian_asks_for_cyrillic_text() -> None:
    form = legacy.parse_form(None, b"", b"key=k&method=base64&body=aGk%3D&is_russian=1")
    _, spec, _ = legacy.parse_in(form)
    assert spec.params["language"] == 1
    form = legacy.parse_form(None, b"", b"key=k&method=base64&body=aGk%3D&is_russian=1&language=2")
    assert legacy.parse_in(form)[1].params["language"] == 2


def test_blank_values_are_kept() -> None:
    assert legacy.parse_form(None, b"key=&json=1", b"") == {"key": "", "json": "1"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, b"key=\xff\xfe"),
        (b"multipart/form-data", b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n"),
        (MULTIPART, b"no boundary in here at all"),
        (b"application/json", b"{not json"),
        (b"application/json", b"[1, 2]"),
    ],
)
def test_malformed_bodies_are_bad_requests(content_type: bytes, body: bytes) -> None:
    with pytest.raises(CapgateError) as caught:
        legacy.parse_form(content_type, b"", body)
    assert caught.value.code is ErrorCode.BAD_REQUEST


# --- the form reader's shapes and bounds (capgate.forms) ------------------------------------


def test_multipart_lf_line_ends_quoted_boundary_preamble_and_epilogue() -> None:
    body = (
        b"a preamble\n--XyZ\n"
        b'Content-Disposition: form-data; name="key"\n\nk\n'
        b"--XyZ  \n"  # transport padding after a boundary
        b"content-disposition: form-data;name=method\n\npost\n"
        b"--XyZ--\nan epilogue --XyZ\n"
    )
    form = legacy.parse_form(b'multipart/form-data; boundary="XyZ"', b"", body)
    assert form == {"key": "k", "method": "post"}


def test_multipart_empty_values_with_or_without_their_line_end() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="b"\r\n\r\n'
        b"--XyZ--\r\n"
    )
    assert legacy.parse_form(MULTIPART, b"", body) == {"a": "", "b": ""}


def test_multipart_charsets_filename_star_and_escaped_quotes() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="t"\r\n'
        b"Content-Type: text/plain; charset=ISO-8859-1\r\n\r\n\xe7a va\r\n"
        b"--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename*=utf-8''%C3%A7.png\r\n"
        b"\r\n\x89PNG\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="q\\"\\\\x"\r\n\r\nv\r\n'
        b"--XyZ\r\nContent-Type: text/plain\r\n\r\nno name: skipped\r\n"
        b"--XyZ--\r\n"
    )
    form = legacy.parse_form(MULTIPART, b"", body)
    assert form == {"t": "ça va", "up": b"\x89PNG", 'q"\\x': "v"}


def multipart_parts(count: int) -> bytes:
    return multipart({f"f{i}": "v" for i in range(count)}, {})


def test_sixty_four_parts_are_read_sixty_five_are_refused() -> None:
    assert len(legacy.parse_form(MULTIPART, b"", multipart_parts(64))) == 64
    with pytest.raises(CapgateError, match="more than 64 parts"):
        legacy.parse_form(MULTIPART, b"", multipart_parts(65))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"--XyZ\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n", "nested"),
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n'
            b"Content-Type: text/plain; charset=rot13\r\n\r\nv\r\n--XyZ--\r\n",
            "charset",
        ),
        (
            b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n'
            b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\r\n--XyZ--\r\n",
            "charset",
        ),
        (b"--XyZ\r\n" + b"X-A: b\r\n" * 9 + b"\r\nv\r\n--XyZ--\r\n", "headers"),
        (b"--XyZ\r\nX-A: " + b"b" * 1100 + b"\r\n\r\nv\r\n--XyZ--\r\n", "headers"),
        (b"--XyZ\r\nNo colon here\r\n\r\nv\r\n--XyZ--\r\n", "colon"),
        (b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n', "closing"),
        (b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n--XyZa\r\n', "inside"),
        (b"--XyZ garbage\r\n\r\nv\r\n--XyZ--\r\n", "boundary line"),
        (b"--XyZ--\r\n", "no named field"),
    ],
)
def test_multipart_bodies_the_reader_refuses(body: bytes, reason: str) -> None:
    with pytest.raises(CapgateError, match=reason) as caught:
        legacy.parse_form(MULTIPART, b"", body)
    assert caught.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "content_type",
    [b"multipart/form-data; boundary=", b"multipart/form-data; boundary=" + b"b" * 71],
)
def test_a_boundary_must_be_usable(content_type: bytes) -> None:
    with pytest.raises(CapgateError, match="boundary"):
        legacy.parse_form(content_type, b"", multipart({"key": "k"}, {}))


@pytest.mark.parametrize(
    "raw",
    [
        b"a=%41%4a%4A+b&%=&b=100%&c=%zz%4&d=%%41&e&&f==x&g=%C3%A9&h=%ff&i=x%3D%26y",
        b"body=aGV%2Bsb%2FG8%3D&json=1",
        b"x=%E2%82%AC%E2%82&y=h%hh%%hh",
    ],
)
def test_urlencoded_reads_as_urllib_does(raw: bytes) -> None:
    from urllib.parse import parse_qsl

    assert legacy.parse_form(FORM, b"", raw) == dict(parse_qsl(raw.decode(), True))
    assert legacy.parse_form(None, raw, b"") == dict(parse_qsl(raw.decode(), True))


def test_urlencoded_field_and_stray_percent_caps() -> None:
    with pytest.raises(CapgateError, match="more than 64 fields"):
        legacy.parse_form(FORM, b"", b"&".join([b"a=1"] * 65))
    with pytest.raises(CapgateError, match="more than 64 fields"):
        legacy.parse_form(None, b"&".join([b"a=1"] * 65), b"")
    assert legacy.parse_form(FORM, b"", b"a=" + b"%" * 64) == {"a": "%" * 64}
    with pytest.raises(CapgateError, match="'%'"):
        legacy.parse_form(FORM, b"", b"a=" + b"%" * 65)
    with pytest.raises(CapgateError, match="more than 64 fields"):
        legacy.parse_form(
            b"application/json", b"", json.dumps({f"f{i}": 1 for i in range(65)}).encode()
        )


def nested(levels: int, lines: int) -> bytes:
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(1, levels + 1)
    )
    return b"--XyZ\r\n" + head + b"\r\n" + b"a\r\n" * lines


MEGABYTE = 999_000
WORST_BODIES: dict[str, tuple[bytes, bytes]] = {
    "nested 900 deep, then 300k lines": (MULTIPART, nested(900, 300_000)),
    "a part of near-miss boundaries": (
        MULTIPART,
        multipart({"f": "\n--Xy" * (MEGABYTE // 5)}, {}),
    ),
    "a megabyte text part, invalid UTF-8": (
        MULTIPART,
        b'--XyZ\r\nContent-Disposition: form-data; name="t"\r\n\r\n'
        + b"\xff" * MEGABYTE
        + b"\r\n--XyZ--\r\n",
    ),
    "64 parts, headers at the cap": (
        MULTIPART,
        b"".join(
            b'--XyZ\r\nContent-Disposition: form-data; name="' + b"\\\\" * 490 + b'"\r\n\r\nv\r\n'
            for _ in range(64)
        )
        + b"--XyZ--\r\n",
    ),
    "a megabyte of escapes": (FORM, b"body=" + b"%41" * (MEGABYTE // 3)),
    "a megabyte of stray percents": (FORM, b"body=" + b"a%" * (MEGABYTE // 2)),
    "63 fields of escapes, 64 stray percents each": (
        FORM,
        b"&".join(b"f=" + b"%C3%A9" * 2400 + b"%" * 64 for _ in range(63)),
    ),
    "a megabyte of separators": (FORM, b"&" * MEGABYTE),
}


@pytest.mark.parametrize("name", list(WORST_BODIES))
def test_the_worst_bodies_found_take_milliseconds(name: str) -> None:
    """Measured at about 8 ms at worst (a megabyte of escapes); the bound leaves room for
    a busy machine, and is far below the seconds the email parser took."""
    import time

    content_type, body = WORST_BODIES[name]
    assert len(body) <= 1_000_000
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        try:
            legacy.parse_form(content_type, b"", body)
        except CapgateError as error:
            assert error.code is ErrorCode.BAD_REQUEST
        best = min(best, time.perf_counter() - started)
    assert best < 0.05, f"{name}: {best * 1000:.0f} ms"


# --- parse_in --------------------------------------------------------------------------------


def test_image_upload_as_the_sdk_sends_it() -> None:
    form = legacy.parse_form(
        MULTIPART,
        b"",
        multipart(
            {
                "key": "k",
                "method": "post",
                "phrase": "1",
                "regsense": "1",
                "numeric": "4",
                "calc": "0",
                "min_len": "4",
                "max_len": "6",
                "language": "2",
                "lang": "en",
                "textinstructions": "red only",
                "soft_id": "4580",
            },
            {"file": ("captcha.png", PNG)},
        ),
    )
    key, spec, as_json = legacy.parse_in(form)
    assert (key, as_json, spec.type, spec.body) == ("k", False, TaskType.IMAGE_TO_TEXT, PNG)
    assert spec.params == {
        "vendorType": "normal",
        "phrase": True,
        "case": True,
        "numeric": 4,
        "math": False,
        "minLength": 4,
        "maxLength": 6,
        "language": 2,
        "lang": "en",
        "comment": "red only",
    }


def test_base64_image() -> None:
    encoded = base64.b64encode(PNG).decode()
    key, spec, as_json = legacy.parse_in(
        {"key": "k", "method": "base64", "body": encoded, "json": "1"}
    )
    assert (key, spec.body, as_json) == ("k", PNG, True)


@pytest.mark.parametrize(
    "body",
    [
        "data:image/png;base64,aGVsbG8=",
        "aGVs\nbG8=",
        " aGVsbG8= ",
    ],
)
def test_base64_junk_is_tolerated(body: str) -> None:
    assert legacy.parse_in({"key": "k", "method": "base64", "body": body})[1].body == b"hello"


def test_unencoded_plus_signs_come_back() -> None:
    # "+/+/" in a form that was not percent-encoded arrives as " / /".
    assert legacy.parse_in({"key": "k", "method": "base64", "body": " / /"})[1].body == (
        base64.b64decode("+/+/")
    )


def test_no_method_means_an_image() -> None:
    assert legacy.parse_in({"key": "k", "body": "aGVsbG8="})[1].type is TaskType.IMAGE_TO_TEXT


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"method": "post", "file": PNG}, ErrorCode.KEY_DOES_NOT_EXIST),
        ({"key": " ", "method": "post", "file": PNG}, ErrorCode.KEY_DOES_NOT_EXIST),
        ({"key": "k", "method": "post"}, ErrorCode.ZERO_CAPTCHA_FILESIZE),
        ({"key": "k", "method": "post", "file": b""}, ErrorCode.ZERO_CAPTCHA_FILESIZE),
        ({"key": "k", "method": "base64", "body": "!!!"}, ErrorCode.IMAGE_TYPE_NOT_SUPPORTED),
        ({"key": "k", "method": "post", "textcaptcha": "2+2?"}, ErrorCode.TASK_NOT_SUPPORTED),
        ({"key": "k", "method": "keycaptcha"}, ErrorCode.TASK_NOT_SUPPORTED),
        ({"key": "k", "method": "userrecaptcha", "pageurl": "u"}, ErrorCode.BAD_REQUEST),
        ({"key": "k", "method": "userrecaptcha", "googlekey": "g"}, ErrorCode.BAD_REQUEST),
        (
            {"key": "k", "method": "hcaptcha", "googlekey": "g", "pageurl": "u"},
            ErrorCode.BAD_REQUEST,
        ),
        (
            {
                "key": "k",
                "method": "userrecaptcha",
                "googlekey": "g",
                "pageurl": "u",
                "min_score": "x",
            },
            ErrorCode.BAD_REQUEST,
        ),
    ],
)
def test_bad_in_requests(form: legacy.Form, code: ErrorCode) -> None:
    with pytest.raises(CapgateError) as caught:
        legacy.parse_in(form)
    assert caught.value.code is code
    assert caught.value.description


@pytest.mark.parametrize(
    ("extra", "task_type"),
    [
        ({}, TaskType.RECAPTCHA_V2),
        ({"version": "v2", "enterprise": "0"}, TaskType.RECAPTCHA_V2),
        ({"enterprise": "1"}, TaskType.RECAPTCHA_V2_ENTERPRISE),
        ({"version": "v3"}, TaskType.RECAPTCHA_V3),
        ({"version": "V3", "enterprise": "1"}, TaskType.RECAPTCHA_V3),
    ],
)
def test_userrecaptcha(extra: dict[str, str], task_type: TaskType) -> None:
    form: legacy.Form = {
        "key": "k",
        "method": "userrecaptcha",
        "googlekey": "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-",
        "pageurl": "https://www.google.com/recaptcha/api2/demo",
        **extra,
    }
    key, spec, as_json = legacy.parse_in(form)
    assert (key, spec.type, as_json, spec.body) == ("k", task_type, False, None)
    assert spec.params["websiteKey"] == "6Le-wvkSAAAAAPBMRTvw0Q4Muexq9bi0DJwx_mJ-"
    assert spec.params["websiteURL"] == "https://www.google.com/recaptcha/api2/demo"
    assert spec.params["vendorType"] == "userrecaptcha"


def test_recaptcha_v3_options() -> None:
    _, spec, _ = legacy.parse_in(
        {
            "key": "k",
            "method": "userrecaptcha",
            "version": "v3",
            "enterprise": "1",
            "googlekey": "g",
            "pageurl": "u",
            "action": "login",
            "min_score": "0.7",
            "userAgent": "UA",
        }
    )
    assert spec.params == {
        "websiteKey": "g",
        "websiteURL": "u",
        "vendorType": "userrecaptcha",
        "isEnterprise": True,
        "pageAction": "login",
        "minScore": 0.7,
        "userAgent": "UA",
    }


def test_hcaptcha() -> None:
    _, spec, as_json = legacy.parse_in(
        {"key": "k", "method": "hcaptcha", "sitekey": "s", "pageurl": "u", "invisible": "1"}
    )
    assert (spec.type, as_json) == (TaskType.HCAPTCHA, False)
    assert spec.params == {
        "websiteKey": "s",
        "websiteURL": "u",
        "vendorType": "hcaptcha",
        "isInvisible": True,
    }


def test_turnstile_with_useragent_and_json() -> None:
    _, spec, as_json = legacy.parse_in(
        {
            "key": "k",
            "method": "turnstile",
            "sitekey": "1x00000000000000000000AA",
            "pageurl": "https://x",
            "useragent": "UA",
            "json": "1",
        }
    )
    assert (spec.type, as_json) == (TaskType.TURNSTILE, True)
    assert spec.params["userAgent"] == "UA"


# --- in.php answers --------------------------------------------------------------------------


def test_render_in_plain_and_json() -> None:
    created = task(TaskStatus.QUEUED)
    assert legacy.render_in(created, False) == b"OK|74372499131"
    assert legacy.render_in(created, True) == b'{"status":1,"request":"74372499131"}'


# --- parse_res -------------------------------------------------------------------------------


def test_res_get_one() -> None:
    res = legacy.parse_res({"key": "k", "action": "get", "id": "74372499131"})
    assert res == legacy.ResRequest("k", "get", [74372499131], False)
    assert not res.many


def test_res_get_ids() -> None:
    res = legacy.parse_res({"key": "k", "action": "GET", "ids": "1, 2,x,3,", "json": "1"})
    assert res == legacy.ResRequest("k", "get", [1, 2, 0, 3], True, many=True)


def test_res_single_id_in_ids_is_still_many() -> None:
    assert legacy.parse_res({"key": "k", "action": "get", "ids": "7"}).many


@pytest.mark.parametrize("action", ["reportbad", "reportgood", "get2"])
def test_res_actions_with_an_id(action: str) -> None:
    assert legacy.parse_res({"key": "k", "action": action, "id": "9"}).task_ids == [9]


def test_res_getbalance_needs_no_id() -> None:
    assert legacy.parse_res({"key": "k", "action": "getbalance"}) == legacy.ResRequest(
        "k", "getbalance", [], False
    )


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"action": "get", "id": "1"}, ErrorCode.KEY_DOES_NOT_EXIST),
        ({"key": "k", "id": "1"}, ErrorCode.NO_SUCH_METHOD),
        ({"key": "k", "action": "userinfo"}, ErrorCode.NO_SUCH_METHOD),
        ({"key": "k", "action": "get"}, ErrorCode.TASK_NOT_FOUND),
        ({"key": "k", "action": "get", "id": "abc"}, ErrorCode.TASK_NOT_FOUND),
        ({"key": "k", "action": "get", "id": "-1"}, ErrorCode.TASK_NOT_FOUND),
        ({"key": "k", "action": "get", "ids": ",,"}, ErrorCode.TASK_NOT_FOUND),
        ({"key": "k", "action": "reportbad"}, ErrorCode.TASK_NOT_FOUND),
    ],
)
def test_bad_res_requests(form: legacy.Form, code: ErrorCode) -> None:
    with pytest.raises(CapgateError) as caught:
        legacy.parse_res(form)
    assert caught.value.code is code


def test_res_ids_are_capped_at_a_hundred() -> None:
    hundred = ",".join(str(i) for i in range(1, 101)) + ","
    assert len(legacy.parse_res({"key": "k", "action": "get", "ids": hundred}).task_ids) == 100
    with pytest.raises(CapgateError, match="more than 100") as caught:
        legacy.parse_res({"key": "k", "action": "get", "ids": "1," * 300_000})
    assert caught.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("raw", ["9" * 5000, "0" * 30 + "1", "9223372036854775808"])
def test_res_overlong_ids_are_wrong_ids(raw: str) -> None:
    with pytest.raises(CapgateError) as caught:
        legacy.parse_res({"key": "k", "action": "get", "id": raw})
    assert caught.value.code is ErrorCode.TASK_NOT_FOUND
    res = legacy.parse_res({"key": "k", "action": "get", "ids": f"{raw},1"})
    assert res.task_ids == [0, 1]


def test_an_overlong_integer_option_is_a_bad_request() -> None:
    form: legacy.Form = {"key": "k", "body": "aGVsbG8=", "min_len": "9" * 5000}
    with pytest.raises(CapgateError, match="min_len is out of range") as caught:
        legacy.parse_in(form)
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_missing_action_is_error_empty_action() -> None:
    with pytest.raises(CapgateError) as caught:
        legacy.parse_res({"key": "k"})
    assert legacy.render_error(caught.value, False) == b"ERROR_EMPTY_ACTION"


# --- res.php answers -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.RUNNING])
def test_not_ready(status: TaskStatus) -> None:
    waiting = task(status)
    assert legacy.render_res_task(waiting, False, False) == b"CAPCHA_NOT_READY"
    assert legacy.render_res_task(waiting, True, True) == (
        b'{"status":0,"request":"CAPCHA_NOT_READY"}'
    )


def test_image_answer() -> None:
    done = task(TaskStatus.READY, solution=Solution(text="W68HP"))
    assert legacy.render_res_task(done, False, False) == b"OK|W68HP"
    assert legacy.render_res_task(done, True, False) == b'{"status":1,"request":"W68HP"}'


@pytest.mark.parametrize(
    "task_type",
    [TaskType.RECAPTCHA_V2, TaskType.RECAPTCHA_V3, TaskType.HCAPTCHA, TaskType.TURNSTILE],
)
def test_token_answer(task_type: TaskType) -> None:
    done = task(TaskStatus.READY, task_type, solution=Solution(token="03AGdBq24"))
    assert legacy.render_res_task(done, False, False) == b"OK|03AGdBq24"
    assert json.loads(legacy.render_res_task(done, True, False)) == {
        "status": 1,
        "request": "03AGdBq24",
    }


def test_json_answer_carries_the_user_agent() -> None:
    done = task(TaskStatus.READY, TaskType.TURNSTILE, solution=Solution(token="t", user_agent="UA"))
    assert json.loads(legacy.render_res_task(done, True, False)) == {
        "status": 1,
        "request": "t",
        "useragent": "UA",
    }
    assert legacy.render_res_task(done, False, False) == b"OK|t"


def test_get2_adds_the_price() -> None:
    done = task(TaskStatus.READY, solution=Solution(text="W68HP"))
    assert legacy.render_res_task(done, False, True) == b"OK|W68HP|0.00299"
    assert legacy.render_res_task(done, True, True) == (
        b'{"status":1,"request":"W68HP","price":"0.00299"}'
    )


def test_failed_task() -> None:
    failed = task(
        TaskStatus.FAILED,
        error_code=ErrorCode.CAPTCHA_UNSOLVABLE,
        error_description="Workers could not solve the Captcha",
    )
    assert legacy.render_res_task(failed, False, False) == b"ERROR_CAPTCHA_UNSOLVABLE"
    assert json.loads(legacy.render_res_task(failed, True, True)) == {
        "status": 0,
        "request": "ERROR_CAPTCHA_UNSOLVABLE",
        "error_text": "Workers could not solve the Captcha",
    }


def test_failed_without_a_code_is_unsolvable() -> None:
    assert legacy.render_res_task(task(TaskStatus.FAILED), False, False) == (
        b"ERROR_CAPTCHA_UNSOLVABLE"
    )


def test_timed_out_task_is_unsolvable() -> None:
    failed = task(TaskStatus.FAILED, error_code=ErrorCode.TASK_TIMEOUT)
    assert legacy.render_res_task(failed, False, False) == b"ERROR_CAPTCHA_UNSOLVABLE"


def test_many_answers_in_order() -> None:
    tasks: list[Task | None] = [
        task(TaskStatus.READY, solution=Solution(text="abc")),
        task(TaskStatus.RUNNING),
        None,
        task(TaskStatus.FAILED, error_code=ErrorCode.CAPTCHA_UNSOLVABLE),
        task(TaskStatus.READY, TaskType.TURNSTILE, solution=Solution(token="tok")),
    ]
    expected = "abc|CAPCHA_NOT_READY|ERROR_WRONG_CAPTCHA_ID|ERROR_CAPTCHA_UNSOLVABLE|tok"
    assert legacy.render_res_many(tasks, False) == expected.encode()
    assert json.loads(legacy.render_res_many(tasks, True)) == {"status": 1, "request": expected}


@pytest.mark.parametrize(
    ("micros", "text"),
    [(9_999_000, "9.999"), (0, "0"), (50_250_000, "50.25"), (1, "0.000001"), (12_000_000, "12")],
)
def test_balance(micros: int, text: str) -> None:
    key = Key(1, "k", b"", micros, 0, 0.0)
    assert legacy.render_balance(key, False) == text.encode()
    assert float(legacy.render_balance(key, False)) == micros / 1_000_000
    assert json.loads(legacy.render_balance(key, True)) == {"status": 1, "request": text}


def test_reported() -> None:
    assert legacy.render_reported(False) == b"OK_REPORT_RECORDED"
    assert legacy.render_reported(True) == b'{"status":1,"request":"OK_REPORT_RECORDED"}'


# --- Errors ----------------------------------------------------------------------------------


def test_every_error_code_is_mapped_and_says_error() -> None:
    assert set(legacy.ERRORS) == set(ErrorCode)
    for code in ErrorCode:
        plain = legacy.render_error(CapgateError(code, "why"), False)
        assert b"ERROR" in plain, code  # 2captcha-python's only test for an error.
        assert plain == legacy.ERRORS[code].encode()
        assert json.loads(legacy.render_error(CapgateError(code, "why"), True)) == {
            "status": 0,
            "request": legacy.ERRORS[code],
            "error_text": "why",
        }


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (ErrorCode.KEY_DOES_NOT_EXIST, "ERROR_KEY_DOES_NOT_EXIST"),
        (ErrorCode.ZERO_BALANCE, "ERROR_ZERO_BALANCE"),
        (ErrorCode.ZERO_CAPTCHA_FILESIZE, "ERROR_ZERO_CAPTCHA_FILESIZE"),
        (ErrorCode.TOO_BIG_CAPTCHA_FILESIZE, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
        (ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, "ERROR_IMAGE_TYPE_NOT_SUPPORTED"),
        (ErrorCode.CAPTCHA_UNSOLVABLE, "ERROR_CAPTCHA_UNSOLVABLE"),
        (ErrorCode.TASK_NOT_FOUND, "ERROR_WRONG_CAPTCHA_ID"),
        (ErrorCode.BAD_REQUEST, "ERROR_BAD_PARAMETERS"),
        (ErrorCode.NO_SUCH_METHOD, "ERROR_EMPTY_ACTION"),
    ],
)
def test_vendor_error_strings(code: ErrorCode, text: str) -> None:
    assert legacy.ERRORS[code] == text


def test_json_error_without_description() -> None:
    error = CapgateError(ErrorCode.ZERO_BALANCE, "")
    assert json.loads(legacy.render_error(error, True))["error_text"] == "ERROR_ZERO_BALANCE"


# --- The SDK itself, over requests' own encoding, with no network -------------------------


class FakeResponse:
    """What twocaptcha/api.py reads from a response: status_code and content."""

    status_code = 200

    def __init__(self, content: bytes) -> None:
        self.content = content


class FakeVendor:
    """Answers the SDK's requests through the dialect only; tasks are set by the test."""

    def __init__(self) -> None:
        self.tasks: dict[int, Task] = {}
        self.forms: list[legacy.Form] = []

    def respond(self, prepared: requests.PreparedRequest) -> FakeResponse:
        url = urlsplit(prepared.url or "")
        raw = prepared.body or b""
        body = raw.encode() if isinstance(raw, str) else raw
        content_type = prepared.headers.get("Content-Type")
        form = legacy.parse_form(
            content_type.encode() if content_type else None, url.query.encode(), body
        )
        self.forms.append(form)
        try:
            if url.path == "/in.php":
                _, spec, as_json = legacy.parse_in(form)
                created = task(TaskStatus.QUEUED, spec.type, id=1000005 + len(self.tasks))
                self.tasks[created.id] = created
                return FakeResponse(legacy.render_in(created, as_json))
            res = legacy.parse_res(form)
            if res.action == "getbalance":
                account = Key(1, "k", b"", 9_999_000, 0, 0.0)
                return FakeResponse(legacy.render_balance(account, res.as_json))
            if res.action.startswith("report"):
                return FakeResponse(legacy.render_reported(res.as_json))
            found = self.tasks.get(res.task_ids[0])
            if found is None:
                raise CapgateError(ErrorCode.TASK_NOT_FOUND, "no such task")
            return FakeResponse(legacy.render_res_task(found, res.as_json, res.action == "get2"))
        except CapgateError as error:
            return FakeResponse(legacy.render_error(error, legacy.wants_json(form)))


@pytest.fixture
def vendor(monkeypatch: pytest.MonkeyPatch) -> FakeVendor:
    twocaptcha_api = pytest.importorskip("twocaptcha.api")
    fake = FakeVendor()

    def post(url: str, data: dict[str, Any], files: dict[str, Any] | None = None) -> FakeResponse:
        return fake.respond(requests.Request("POST", url, data=data, files=files).prepare())

    def get(url: str, params: dict[str, Any]) -> FakeResponse:
        return fake.respond(requests.Request("GET", url, params=params).prepare())

    monkeypatch.setattr(twocaptcha_api.requests, "post", post)
    monkeypatch.setattr(twocaptcha_api.requests, "get", get)
    return fake


def test_sdk_image_round_trip(vendor: FakeVendor, tmp_path: Path) -> None:
    from twocaptcha import TwoCaptcha
    from twocaptcha.exceptions.solver import NetworkException

    image = tmp_path / "captcha.png"
    image.write_bytes(PNG)
    solver = TwoCaptcha("k")
    captcha_id = solver.send(method="post", file=str(image), caseSensitive=1, minLen=4)
    assert captcha_id == "1000005"
    assert vendor.forms[-1]["file"] == PNG
    assert vendor.forms[-1]["regsense"] == "1"
    assert vendor.forms[-1]["min_len"] == "4"

    waiting = vendor.tasks[1000005]
    # Not ready: the SDK's get_result raises NetworkException, which wait_result retries.
    with pytest.raises(NetworkException):
        solver.get_result(captcha_id)

    vendor.tasks[1000005] = task(
        TaskStatus.READY, waiting.type, id=waiting.id, solution=Solution(text="W68HP")
    )
    assert solver.get_result(captcha_id) == "W68HP"


def test_sdk_turnstile_and_extended_response(vendor: FakeVendor) -> None:
    from twocaptcha import TwoCaptcha

    solver = TwoCaptcha("k", extendedResponse=True)
    captcha_id = solver.send(
        method="turnstile", sitekey="1x00000000000000000000AA", url="https://x", useragent="UA"
    )
    assert vendor.forms[-1]["pageurl"] == "https://x"
    created = vendor.tasks[int(captcha_id)]
    assert created.type is TaskType.TURNSTILE
    vendor.tasks[created.id] = task(
        TaskStatus.READY,
        created.type,
        id=created.id,
        solution=Solution(token="XXXX.DUMMY.TOKEN.XXXX", user_agent="UA"),
    )
    assert solver.get_result(captcha_id) == {
        "status": 1,
        "request": "XXXX.DUMMY.TOKEN.XXXX",
        "useragent": "UA",
    }


def test_sdk_balance_report_and_errors(vendor: FakeVendor) -> None:
    from twocaptcha import TwoCaptcha
    from twocaptcha.api import ApiException

    solver = TwoCaptcha("k")
    assert solver.balance() == 9.999
    assert solver.report("5", True) == "OK_REPORT_RECORDED"
    with pytest.raises(ApiException, match="ERROR_WRONG_CAPTCHA_ID"):
        solver.get_result("424242")
    with pytest.raises(ApiException, match="ERROR_NO_SUCH_METHOD"):
        solver.send(method="keycaptcha", s_s_c_user_id="1")
    with pytest.raises(ApiException, match="ERROR_KEY_DOES_NOT_EXIST"):
        TwoCaptcha("").balance()
