"""A raw-bytes fuzzer on the HTTP front door: seeded random and malformed requests on raw
TCP sockets to a real server (garbage request lines, broken headers, wrong Content-Length,
chunked-encoding garbage, truncated requests, huge headers, JSON-ish and form bodies on the
task routes; multipart and urlencoded bodies built to cost the legacy form parser; the
worker routes, with a real worker key among the junk; the dashboard and /admin with junk
cookies, tokens and log-ins). The server must stay up, never answer 5xx nor log an internal
error, change nothing stored, and keep answering: a thread asks /healthz every 0.1 s
meanwhile, and a probe slower than 1 s fails.

Every input is rebuilt from its number alone (`make_input(n)`), so a failure names the
input that caused it (a live session cookie stands where it says @SESSION@, the worker key
where it says @WORKER@).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import re
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.security import HealthProbe
from tests.support import BOOTSTRAP_KEY, CapgateServer, ServerFactory, captchas, run_cli

pytestmark = pytest.mark.system

SEED = 20_250_601
MAX_INPUTS = 3000
MAX_SECONDS = 30.0
THREADS = 12

GOOD_IMAGE = captchas(seed=4242, n=1)[0][0]
WRONG_KEYS = ["f" * 32, "", " ", "0" * 31, BOOTSTRAP_KEY.upper(), BOOTSTRAP_KEY + "0", "null"]

# Every route the server has (the test-only clock excepted), and some it has not.
JSON_PATHS = [
    f"{prefix}/{method}"
    for prefix in ("", "/anticaptcha", "/2captcha", "/capmonster", "/capsolver", "/anysolver")
    for method in ("createTask", "getTaskResult", "getBalance")
] + [
    "/api/solver/createTask",
    "/api/solver/getTaskResult",
    "/reportIncorrectImageCaptcha",
    "/reportCorrect",
    "/feedbackTask",
    "/capsolver/feedbackTask",
]
FORM_PATHS = ["/in.php", "/res.php"]
REST_PATHS = ["/task/submit", "/task/result/1", "/task/result/", "/task/result/x/y"]
OTHER_PATHS = [
    "/healthz",
    "/metrics",
    "/openapi/anticaptcha.json",
    "/worker/lease",
    "/worker/complete",
    "/worker/fail",
    "/worker/extend",
    "/",
    "/nope",
    "/createTask/",
    "//createTask",
    "/createTask?x=1",
    "/in.php?key=" + BOOTSTRAP_KEY + "&action=get&id=1",
    "/res.php?key=" + BOOTSTRAP_KEY + "&action=getbalance&json=1",
    "/task/result/%C2%B2",
    "/task/result/00000000-0000-0000-0000-000000000001",
    "/task/result/" + "9" * 40,
    "/%00",
    "/%ZZ",
    "/..%2f..%2fetc/passwd",
]
FAVOURITE_PATHS = ["/createTask", "/getTaskResult", "/in.php", "/task/submit"]
METHODS = ["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=XyZ",
    "multipart/form-data",
    "text/plain",
    "application/octet-stream",
    "",
]

# Words and values a client might send, and some a fuzzer likes.
FIELDS = [
    "clientKey", "task", "type", "body", "taskId", "websiteKey", "websiteURL", "numeric",
    "minLength", "maxLength", "case", "math", "phrase", "callbackUrl", "idempotencyKey",
    "waitSeconds", "softId", "languagePool", "key", "method", "json", "id", "ids", "action",
    "file", "textinstructions", "token", "api_key", "appId", "workerKey", "types", "limit",
    "leaseSeconds", "solution", "errorId", "__proto__", "", " ",
]  # fmt: skip
TASK_TYPES = [
    "ImageToTextTask", "ImageToTextTaskMuggle", "ImageToTextTaskM1", "image", "ocr",
    "RecaptchaV2TaskProxyless", "HCaptchaTaskProxyless", "TurnstileTaskProxyless",
    "RecaptchaV3TaskProxyless", "FunCaptchaTaskProxyless", "GeeTestTaskProxyless",
    "MindReadingTask", "", "imagetotexttask", "Image To Text",
]  # fmt: skip
STRINGS = [
    "", " ", "0", "-1", "1e3", "NaN", "Infinity", "null", "true", "[]", "{}", "%s%n%x",
    "' OR 1=1 --", "<script>", "../../etc/passwd", "\u0000", "\ud800", "\udfff", "\uffff",
    "\U0001f600", "²", "١٢٣", "①", "Ⅻ", "\u202e", "ß", "İ", "a" * 300, "=" * 9,
    "data:image/png;base64,", "iVBORw0KGgo=", "R0lGODlh", "/9j/4AAQ", "http://127.0.0.1/",
    "https://example.com/", "file:///etc/passwd", "00000000-0000-0000-0000-000000000001",
    "01ARZ3NDEKTSV4RRFFQ69G5FAV",
]  # fmt: skip
NUMBERS: list[Any] = [
    0, 1, -1, 2, 3, 64, 65, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30,
    0.5, -0.0, 1e308, 1e-308, 3.0,
]  # fmt: skip
RAW_NUMBERS = [b"1e999", b"-1e999", b"NaN", b"Infinity", b"9" * 400, b"0x10", b"01", b"1."]


@dataclass(frozen=True)
class Case:
    """One input: its bytes, what kind of damage it carries, and whether its framing is
    valid HTTP/1.1 (then it must be answered, and not with a 5xx)."""

    number: int
    kind: str
    data: bytes
    valid_framing: bool
    path: str = ""


# --- JSON-ish and form bodies -------------------------------------------------------------


def random_string(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(STRINGS)
    if roll < 0.7:
        return rng.choice([*WRONG_KEYS, BOOTSTRAP_KEY])
    if roll < 0.85:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(12)))
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=") for _ in range(60))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([random_string(rng), rng.choice(NUMBERS), None, True, False])
    if roll < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def mentions_key(value: Any) -> bool:
    """Whether the real key appears anywhere in a structure."""
    if isinstance(value, str):
        return BOOTSTRAP_KEY in value
    if isinstance(value, dict):
        return any(mentions_key(k) or mentions_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(mentions_key(v) for v in value)
    return False


def without_image(value: Any) -> Any:
    """The structure with the readable image taken out wherever it is."""
    if isinstance(value, dict):
        return {k: without_image(v) for k, v in value.items() if v != GOOD_IMAGE}
    if isinstance(value, list):
        return [without_image(v) for v in value if v != GOOD_IMAGE]
    return value


def creates_nothing(value: Any, *context: str) -> Any:
    """Nothing may be created: the readable image stays only where the real key is nowhere
    (neither in the document nor in the path, query or headers that go with it)."""
    if mentions_key(value) or any(BOOTSTRAP_KEY in text for text in context):
        return without_image(value)
    return value


def random_task(rng: random.Random, real_key: bool) -> dict[str, Any]:
    task: dict[str, Any] = {"type": rng.choice(TASK_TYPES)}
    for _ in range(rng.randrange(5)):
        task[rng.choice(FIELDS)] = random_value(rng, 2)
    if not real_key and rng.random() < 0.3:
        task["body"] = GOOD_IMAGE  # to be taken out again if the real key turns up
    return task


def json_body(rng: random.Random, path: str) -> bytes:
    """A JSON document shaped (more or less) like a request to `path`, then maybe mangled."""
    real_key = rng.random() < 0.5
    key: Any = BOOTSTRAP_KEY if real_key else rng.choice([*WRONG_KEYS, 5, None, [], {}])
    document: dict[str, Any] = {}
    if rng.random() < 0.9:
        document["clientKey"] = key
    if "createTask" in path or "submit" in path or rng.random() < 0.2:
        document["task"] = random_task(rng, real_key) if rng.random() < 0.85 else random_value(rng)
    if "Result" in path or "report" in path.lower() or "feedback" in path or rng.random() < 0.2:
        document["taskId"] = rng.choice([*NUMBERS, *STRINGS, None, [1], {"id": 1}])
    for _ in range(rng.randrange(3)):
        document[rng.choice(FIELDS)] = random_value(rng, 1)
    document = creates_nothing(document, path)
    if rng.random() < 0.05:
        top: Any = random_value(rng)  # not an object at all
        text = json.dumps(top)
    else:
        text = json.dumps(document, ensure_ascii=rng.random() < 0.5)
    data = text.encode("utf-8", "surrogatepass")
    return mangle(rng, data) if rng.random() < 0.35 else data


def mangle(rng: random.Random, data: bytes) -> bytes:
    """Damage a document: flip, insert, delete, truncate, splice in odd tokens."""
    buffer = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        at = rng.randrange(len(buffer) + 1)
        if roll < 0.25 and buffer:
            buffer[min(at, len(buffer) - 1)] = rng.randrange(256)
        elif roll < 0.45:
            buffer[at:at] = rng.choice([b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\x00"])
        elif roll < 0.6:
            del buffer[at : at + rng.randrange(1, 8)]
        elif roll < 0.75:
            buffer = buffer[:at]
        elif roll < 0.9:
            buffer[at:at] = rng.choice(RAW_NUMBERS)
        else:
            buffer[at:at] = rng.choice([b"[" * 5000, b'{"a":' * 3000, b"\xff\xfe", b"\xc3"])
    return bytes(buffer)


def form_body(rng: random.Random, query: str) -> tuple[bytes, str]:
    """A 2Captcha legacy request: urlencoded, multipart or JSON; never a creatable task."""
    real_key = rng.random() < 0.5
    fields: dict[str, str] = {
        "key": BOOTSTRAP_KEY if real_key else rng.choice(WRONG_KEYS),
        "method": rng.choice(["base64", "post", "userrecaptcha", "hcaptcha", "turnstile", "x"]),
        "action": rng.choice(["get", "get2", "getbalance", "reportbad", "reportgood", "nope"]),
        "json": rng.choice(["0", "1", "true", ""]),
        "id": rng.choice(["1", "0", "-1", "x", "1,2,3", "²", "9" * 30, ""]),
    }
    if rng.random() < 0.5:
        fields["ids"] = ",".join(rng.choice(["1", "2", "x", "", "²"]) for _ in range(4))
    if not real_key and rng.random() < 0.5:
        fields["body"] = GOOD_IMAGE
    elif rng.random() < 0.5:
        fields["body"] = random_string(rng)
    for _ in range(rng.randrange(3)):
        fields[rng.choice(FIELDS)] = random_string(rng)
    fields = creates_nothing(fields, query)
    roll = rng.random()
    if roll < 0.45:
        data = urlencode(fields, errors="surrogatepass").encode()
        kind = "application/x-www-form-urlencoded"
    elif roll < 0.75:
        parts = []
        for name, value in fields.items():
            disposition = f'form-data; name="{name}"'
            if name == "file" or rng.random() < 0.1:
                disposition += '; filename="c.png"'
            parts.append(
                f"--XyZ\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n".encode(
                    "utf-8", "surrogatepass"
                )
            )
        if rng.random() < 0.3:
            parts.append(
                b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
                b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n" + rng.randbytes(300) + b"\r\n"
            )
        data = b"".join(parts) + (b"--XyZ--\r\n" if rng.random() < 0.8 else b"")
        kind = rng.choice(["multipart/form-data; boundary=XyZ", "multipart/form-data"])
    else:
        data = json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass")
        kind = "application/json"
    return (mangle(rng, data) if rng.random() < 0.3 else data), kind


def rest_body(rng: random.Random) -> tuple[bytes, list[str]]:
    """A uCaptcha submit: the key in x-api-key (or not), a JSON task (or not)."""
    real_key = rng.random() < 0.5
    headers = [f"x-api-key: {BOOTSTRAP_KEY if real_key else rng.choice(WRONG_KEYS)}"]
    if rng.random() < 0.1:
        headers = []
    document: Any = {"task": random_task(rng, real_key)}
    if rng.random() < 0.4:
        document = random_task(rng, real_key)  # the task at the top level
    document = creates_nothing(document, *headers)
    data = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return (mangle(rng, data) if rng.random() < 0.3 else data), headers


# --- multipart and urlencoded bodies built against the form parser -----------------------

BOUNDARIES = [
    "b0", "XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a" * 70, "a" * 71, "-", "--",
    "with space", "q;uote", "é", "\x00", "b0\r\nX-Injected: 1", "9" * 40,
]  # fmt: skip
CHARSETS = [
    "utf-8", "UTF-8", "latin-1", "iso-8859-1", "us-ascii", "windows-1252", "no-such-charset",
    "rot13", "idna", "utf-16", "utf-7", "punycode", "hex", "zlib", "", "\u00e9", "x" * 500,
]  # fmt: skip
NEWLINES = [b"\r\n", b"\n", b"\r"]


def random_boundary(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(BOUNDARIES)
    alphabet = "abcXYZ0123456789'()+_,-./:=? "
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 75)))


def multipart_type(rng: random.Random, boundary: str) -> str:
    return rng.choice(
        [
            f"multipart/form-data; boundary={boundary}",
            f'multipart/form-data; boundary="{boundary}"',
            f"Multipart/Form-Data;boundary={boundary};charset=utf-8",
            f"multipart/form-data; charset=x; boundary={boundary}; boundary=other",
            f'multipart/form-data; boundary="{boundary}',
            "multipart/form-data; boundary=",
            f"multipart/mixed; boundary={boundary}",
        ]
    )


def nested_parts(rng: random.Random, boundary: bytes, depth: int, newline: bytes) -> bytes:
    """`depth` multipart/mixed parts, each the first part of the one before."""
    out = [b"--" + boundary + newline]
    for level in range(1, depth + 1):
        inner = b"n%d" % level
        kind = rng.choice([b"multipart/mixed", b"multipart/form-data", b"MULTIPART/alternative"])
        out.append(b"Content-Type: %s; boundary=%s%s%s--%s%s" % (
            kind, inner, newline, newline, inner, newline))  # fmt: skip
    return b"".join(out) + newline


def multipart_attack(rng: random.Random) -> tuple[bytes, str]:
    """A multipart/form-data body made to cost a parser: deep nesting, floods of parts,
    lines or header lines, bogus charsets, boundaries inside parts, mixed line ends.
    Never a creatable task: the real key and a readable image are never both in it."""
    boundary = random_boundary(rng)
    raw = boundary.encode("utf-8", "surrogatepass")
    newline = rng.choice(NEWLINES) if rng.random() < 0.3 else b"\r\n"
    real_key = rng.random() < 0.5
    key = (BOOTSTRAP_KEY if real_key else rng.choice(WRONG_KEYS)).encode()

    def field(name: bytes, value: bytes, *headers: bytes) -> bytes:
        nl = rng.choice(NEWLINES) if rng.random() < 0.1 else newline
        head = b"".join(h + nl for h in headers)
        disposition = b'Content-Disposition: form-data; name="%s"' % name
        return b"--" + raw + nl + disposition + nl + head + nl + value + nl

    shape = rng.choice(
        ["nested", "many parts", "many headers", "huge header", "bogus charset", "near misses",
         "lines flood", "no close", "preamble", "plain fields"]
    )  # fmt: skip
    parts = [field(b"key", key), field(b"method", b"post"), field(b"json", b"1")]
    if shape == "nested":
        depth = rng.choice([2, 50, 900, 1100, 3000])
        lines = rng.choice([0, 1000, 300_000]) if depth < 3000 else 0
        body = nested_parts(rng, raw, depth, newline) + b"a" + newline * 2
        body += (b"a" + newline) * min(lines, (990_000 - len(body)) // 3)
        return body, multipart_type(rng, boundary)
    if shape == "many parts":
        count = rng.choice([63, 64, 65, 1000, 100_000])
        part = rng.choice([b"--" + raw + newline, field(b"f", b"v")])
        body = part * min(count, 990_000 // len(part)) + b"--" + raw + b"--" + newline
        return body, multipart_type(rng, boundary)
    if shape == "many headers":
        count = rng.choice([8, 9, 100, 20_000])
        parts.append(field(b"f", b"v", *[b"X-H: v"] * count))
    elif shape == "huge header":
        size = rng.choice([900, 1100, 100_000, 900_000])
        parts.append(field(b"f", b"v", b"X-Big: " + b"b" * size))
    elif shape == "bogus charset":
        charset = rng.choice(CHARSETS).encode("utf-8")
        content_type = b"Content-Type: text/plain; charset=" + charset
        parts.append(field(b"textinstructions", b"\xff\xfe text", content_type))
    elif shape == "near misses":
        parts.append(field(b"f", (newline + b"--" + raw + b"x") * rng.choice([1, 1000, 100_000])))
    elif shape == "lines flood":
        parts.append(field(b"textinstructions", (b"a" + newline) * rng.choice([10, 300_000])))
    elif shape == "preamble":
        parts.insert(0, b"a preamble" + newline * rng.randrange(3))
    file_data = GOOD_IMAGE.encode() if not real_key and rng.random() < 0.5 else rng.randbytes(200)
    parts.append(field(b"file", file_data, b"Content-Type: image/png"))
    body = b"".join(parts)
    if shape != "no close":
        body += b"--" + raw + b"--" + newline
    return (mangle(rng, body) if rng.random() < 0.2 else body), multipart_type(rng, boundary)


def form_attack(rng: random.Random) -> tuple[bytes, str]:
    """An urlencoded body made to cost a parser: floods of fields, escapes, stray '%',
    ids= lists of hundreds of thousands. Never with both the real key and an image."""
    real_key = rng.random() < 0.5
    head = urlencode({"key": BOOTSTRAP_KEY if real_key else rng.choice(WRONG_KEYS),
                      "action": rng.choice(["get", "get2", "getbalance"]),
                      "json": rng.choice(["0", "1"])}).encode()  # fmt: skip
    shape = rng.choice(["fields", "escapes", "stray percents", "ids", "long id", "separators"])
    if shape == "fields":
        tail = b"&".join([b"f=1"] * rng.choice([60, 64, 65, 200_000]))
    elif shape == "escapes":
        tail = b"textinstructions=" + b"%C3%A9" * rng.choice([10, 160_000])
    elif shape == "stray percents":
        stray = rng.choice([b"a%", b"%4", b"%%", b"%zz"])
        tail = b"textinstructions=" + stray * rng.choice([64, 65, 300_000])
    elif shape == "ids":
        one = rng.choice([b"1", b"99999999999999999999", b"%C2%B2", b""])
        tail = b"ids=" + b",".join([one] * rng.choice([100, 101, 200_000]))
    elif shape == "long id":
        tail = b"id=" + b"9" * rng.choice([19, 20, 5000, 900_000])
    else:
        tail = b"&" * rng.choice([63, 64, 900_000])
    if not real_key and rng.random() < 0.3:
        tail += (
            b"&method=base64&body=" + GOOD_IMAGE.replace("+", "%2B").replace("/", "%2F").encode()
        )
    return head + b"&" + tail, rng.choice(["application/x-www-form-urlencoded", ""])


# --- the worker and admin routes ------------------------------------------------------------

WORKER_PATHS = [
    "/worker/lease", "/worker/complete", "/worker/fail", "/worker/extend", "/worker/models",
    "/worker/model",
]  # fmt: skip
WORKER_FIELDS = [
    "workerKey", "types", "limit", "leaseSeconds", "requestId", "taskId", "token", "solution",
    "code", "description", "retry", "text", "userAgent", "score", "site", "version",
    "siteModel",
]  # fmt: skip
# Replaced by a real worker key when the input is sent, so that the worker routes are
# reached past the key check too (the fuzz has no task to lease and no model to fetch).
WORKER = "@WORKER@"
ADMIN_PATHS = ["/dashboard", "/dashboard/login", "/dashboard/logout", "/admin/overview"]
# Replaced by the live session cookie when the input is sent (tokens are random).
SESSION = "@SESSION@"
ADMIN = "raw-fuzz-admin-key-0123456789"
HEADER_JUNK = [
    "", " ", "ключ".encode().decode("latin-1"), "\xff\xfe", "é", "x" * 8000, "=;=;=", '"',
    "v1.1.2.3.4", "v1." + "9" * 5000 + ".1.aa.bb", "v1.1700000000000.9999999999999.00.00",
]  # fmt: skip


def worker_body(rng: random.Random, path: str) -> bytes:
    """A worker-route JSON body (or something like one), maybe mangled."""
    document: dict[str, Any] = {}
    if rng.random() < 0.9:
        document["workerKey"] = rng.choice([*WRONG_KEYS, BOOTSTRAP_KEY, WORKER, WORKER, 5, None])
    wanted = {
        "/worker/lease": ["types", "limit", "leaseSeconds", "requestId"],
        "/worker/extend": ["taskId", "token", "leaseSeconds"],
        "/worker/complete": ["taskId", "token", "solution"],
        "/worker/fail": ["taskId", "token", "code", "description", "retry"],
        "/worker/models": [],
        "/worker/model": ["site", "version"],
    }[path]
    for name in wanted + [rng.choice(WORKER_FIELDS) for _ in range(rng.randrange(3))]:
        if name == "types":
            document[name] = [rng.choice(TASK_TYPES) for _ in range(rng.randrange(4))]
        elif name == "solution":
            document[name] = {rng.choice(WORKER_FIELDS): random_value(rng, 2) for _ in range(3)}
        else:
            document[name] = random_value(rng, 2) if rng.random() < 0.5 else rng.choice(NUMBERS)
    data = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if rng.random() < 0.2:  # a task id or count far past 64 bits
        data = data.replace(b"{", b'{"taskId": ' + b"9" * rng.choice([20, 5000]) + b", ", 1)
    return mangle(rng, data) if rng.random() < 0.3 else data


def admin_request(rng: random.Random) -> tuple[str, str, list[str], bytes]:
    """A request to the dashboard or /admin: junk cookies, Bearer tokens, log-in forms,
    client addresses (uvicorn takes X-Forwarded-For from 127.0.0.1)."""
    path = rng.choice(ADMIN_PATHS)
    method = "POST" if path in ("/dashboard/login", "/dashboard/logout") else "GET"
    if rng.random() < 0.15:
        method = rng.choice(METHODS)
    if rng.random() < 0.3:
        path += "?" + rng.choice(["refresh=", "refresh=" + "9" * 5000, "recent=-1", "recent=x",
                                  "refresh=%ff", "&" * 500, "a=%"])  # fmt: skip
    headers: list[str] = []
    cookie = rng.choice([SESSION, *HEADER_JUNK])
    if rng.random() < 0.7:
        headers.append(f"Cookie: {rng.choice(['capgate_admin=', 'x=1; capgate_admin='])}{cookie}")
    if rng.random() < 0.5:
        token = rng.choice([ADMIN, *HEADER_JUNK, BOOTSTRAP_KEY])
        headers.append(
            "Authorization: " + rng.choice(["Bearer ", "bearer  ", "Basic ", ""]) + token
        )
    if rng.random() < 0.4:
        address = rng.choice([f"10.{rng.randrange(256)}.{rng.randrange(256)}.1",
                              f"2001:db8:{rng.randrange(65536):x}::1", "::ffff:10.0.0.1",
                              "junk", "1.1.1.1, 2.2.2.2"])  # fmt: skip
        headers.append(f"X-Forwarded-For: {address}")
    if rng.random() < 0.2:
        headers.append("X-Forwarded-Proto: " + rng.choice(["https", "http", "HTTPS, http", ""]))
    body = b""
    if path.startswith("/dashboard/login"):
        key = rng.choice([ADMIN, "wrong", *HEADER_JUNK]).encode("latin-1")
        body = rng.choice([b"key=" + key, b"key=" + key + b"&" * 100, b"&" * 70, b"key=%" * 70,
                           b"key=" + b"%41" * 300_000, key])  # fmt: skip
        headers.append("Content-Type: application/x-www-form-urlencoded")
    return method, path, headers, body


# --- whole requests -----------------------------------------------------------------------


def request_bytes(
    method: str, path: str, headers: list[str], body: bytes, *, chunked: bool = False
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        body = chunk(body, 37)
    else:
        head.append(f"Content-Length: {len(body)}")
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


def chunk(body: bytes, size: int) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def valid_request(rng: random.Random) -> tuple[bytes, str]:
    """A well-formed HTTP/1.1 request with a bad (or odd) body, on a task route."""
    roll = rng.random()
    headers: list[str] = []
    if roll < 0.45:
        path = rng.choice(FAVOURITE_PATHS[:2] if rng.random() < 0.5 else JSON_PATHS)
        body = json_body(rng, path)
        headers.append("Content-Type: " + rng.choice(CONTENT_TYPES))
    elif roll < 0.7:
        path = rng.choice(FORM_PATHS)
        if rng.random() < 0.2:
            path += "?" + rng.choice(["json=1", "key=" + BOOTSTRAP_KEY, "action=get&id=²", "%"])
        body, kind = form_body(rng, path)
        headers.append("Content-Type: " + kind)
    elif roll < 0.9:
        path = rng.choice(REST_PATHS)
        body, headers = rest_body(rng)
        headers.append("Content-Type: application/json")
    else:
        path = rng.choice(OTHER_PATHS)
        body = json_body(rng, path)
    if rng.random() < 0.2:
        headers.append("Idempotency-Key: " + rng.choice(["a", "x" * 300, "²", " "]))
    if rng.random() < 0.1:
        headers.append("X-Request-Id: " + "r" * rng.choice([1, 64, 5000]))
    method = "POST" if rng.random() < 0.85 else rng.choice(METHODS)
    if path.startswith("/task/result") and rng.random() < 0.7:
        method = "GET"
    chunked = rng.random() < 0.15
    return request_bytes(method, path, headers, body, chunked=chunked), path


def make_input(number: int) -> Case:
    """Input `number` of the run: the same bytes every time."""
    rng = random.Random(SEED * 1_000_003 + number)
    kind = rng.choices(
        [
            "valid framing, bad body",
            "pipelined",
            "garbage bytes",
            "bad request line",
            "bad headers",
            "wrong content-length",
            "chunked garbage",
            "truncated",
            "huge headers",
            "body over the limit",
            "multipart attack",
            "form attack",
            "worker route",
            "admin route",
        ],
        weights=[40, 4, 8, 10, 10, 8, 8, 8, 3, 1, 8, 4, 8, 8],
    )[0]
    if kind == "valid framing, bad body":
        data, path = valid_request(rng)
        return Case(number, kind, data, True, path)
    if kind in ("multipart attack", "form attack"):
        attack = multipart_attack if kind == "multipart attack" else form_attack
        body, content_type = attack(rng)
        path = rng.choice(FORM_PATHS)
        if rng.random() < 0.3:
            path += "?" + rng.choice(["json=1", "key=" + BOOTSTRAP_KEY, "json=1&action=get"])
        header = "Content-Type: " + content_type.encode("utf-8", "surrogatepass").decode("latin-1")
        chunked = rng.random() < 0.1
        return Case(number, kind, request_bytes("POST", path, [header], body, chunked=chunked),
                    True, path)  # fmt: skip
    if kind == "worker route":
        path = rng.choice(WORKER_PATHS)
        method = "POST" if rng.random() < 0.9 else rng.choice(METHODS)
        data = request_bytes(method, path, ["Content-Type: application/json"],
                             worker_body(rng, path))  # fmt: skip
        return Case(number, kind, data, True, path)
    if kind == "admin route":
        method, path, headers, body = admin_request(rng)
        return Case(number, kind, request_bytes(method, path, headers, body), True, path)
    if kind == "pipelined":
        first, path = valid_request(rng)
        second, _ = valid_request(rng)
        first = first.replace(b"Connection: close\r\n", b"", 1)
        return Case(number, kind, first + second, True, path)
    if kind == "garbage bytes":
        data = rng.randbytes(rng.randrange(1, 600))
        if rng.random() < 0.5:
            data = rng.choice(METHODS).encode() + b" " + data
        return Case(number, kind, data, False)
    if kind == "bad request line":
        return Case(number, kind, bad_request_line(rng), False)
    if kind == "bad headers":
        return Case(number, kind, bad_headers(rng), False)
    if kind == "wrong content-length":
        body = json_body(rng, "/createTask")
        declared = rng.choice([len(body) + rng.randrange(1, 500), max(0, len(body) - 5), 0])
        head = f"POST {rng.choice(FAVOURITE_PATHS)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        return Case(number, kind, head.encode() + body, False)
    if kind == "chunked garbage":
        return Case(number, kind, chunked_garbage(rng), False)
    if kind == "truncated":
        data, _ = valid_request(rng)
        return Case(number, kind, data[: rng.randrange(1, len(data))], False)
    if kind == "huge headers":
        return Case(number, kind, huge_headers(rng), False)
    body = b'{"clientKey":"' + BOOTSTRAP_KEY.encode() + b'","task":{"body":"' + b"A" * 1_000_100
    data = request_bytes("POST", rng.choice(FAVOURITE_PATHS), [], body + b'"}}')
    return Case(number, kind, data, True, "")


def bad_request_line(rng: random.Random) -> bytes:
    path = rng.choice(FAVOURITE_PATHS + OTHER_PATHS)
    wide = "".join(chr(rng.randrange(0x80, 0x800)) for _ in range(5))  # raw UTF-8 in a path
    line = rng.choice(
        [
            f"POST {path}",
            f"POST {path} HTTP/9.9",
            f"POST {path} HTTP/1.1 extra",
            f"POST  {path}  HTTP/1.1",
            f"P\x00ST {path} HTTP/1.1",
            f"POST {path}\x00 HTTP/1.1",
            f"POST /{'a' * 100_000} HTTP/1.1",
            f"POST http://evil.example{path} HTTP/1.1",
            "POST * HTTP/1.1",
            f"POST {path}#frag HTTP/1.1",
            f"{'X' * 5000} {path} HTTP/1.1",
            "PRI * HTTP/2.0\r\n\r\nSM",
            f"post {path} http/1.1",
            f"POST {path} HTTP/1.0",
            f"\r\n\r\nPOST {path} HTTP/1.1",
            f"POST {path.replace('/', chr(rng.randrange(1, 32)))} HTTP/1.1",
            f"GET /task/result/{wide} HTTP/1.1",
        ]
    )
    body = b'{"clientKey":"x"}'
    head = f"{line}\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("utf-8", "surrogatepass") + body


def bad_headers(rng: random.Random) -> bytes:
    body = json_body(rng, "/createTask")
    broken = rng.choice(
        [
            "NoColonHere",
            "Bad Name: x",
            "Name : x",
            ": empty-name",
            "X: a\x00b",
            "X: \x7f\x01",
            " folded: continuation",
            "X: y\r\n continued",
            f"Content-Length: {len(body)}\r\nContent-Length: {len(body) + 1}",
            "Content-Length: -1",
            "Content-Length: abc",
            "Content-Length: 1e3",
            "Content-Length: 99999999999999999999999",
            f"Content-Length: +{len(body)}",
            f"Content-Length: {len(body)}, {len(body)}",
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: chunked, identity",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            "Expect: 100-continue",
            "Expect: teapot",
            "Content-Type: multipart/form-data; boundary=",
            "Content-Type: " + "a" * 8000,
            "Connection: Upgrade\r\nUpgrade: websocket",
            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            "X-Api-Key: " + BOOTSTRAP_KEY + "\x00",
            "Host: a\r\nHost: b",
        ]
    )
    path = rng.choice(FAVOURITE_PATHS)
    lines = [f"POST {path} HTTP/1.1", "Host: x", broken]
    if "Connection" not in broken:
        lines.append("Connection: close")
    if "Content-Length" not in broken and "Transfer-Encoding" not in broken:
        lines.append(f"Content-Length: {len(body)}")
    if rng.random() < 0.3:
        lines.append("Content-Type: application/json")
    terminator = rng.choice([b"\r\n\r\n", b"\n\n", b"\r\n\n", b"\r\r\n"])
    return "\r\n".join(lines).encode("latin-1") + terminator + body


def chunked_garbage(rng: random.Random) -> bytes:
    body = json_body(rng, "/createTask")
    encoded = rng.choice(
        [
            b"zz\r\n" + body + b"\r\n0\r\n\r\n",
            b"%x\r\n" % (len(body) + 10) + body + b"\r\n0\r\n\r\n",
            b"%x\r\n" % len(body) + body + b"0\r\n\r\n",
            b"ffffffffffffffffffffffff\r\n" + body,
            b"-5\r\n" + body + b"\r\n0\r\n\r\n",
            b"%x;ext=1;x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
            b"%x\r\n" % len(body) + body + b"\r\n0\r\nTrailer: x\r\nBad Trailer\r\n\r\n",
            b"%x\n" % len(body) + body + b"\n0\n\n",
            b"%x\r\n" % len(body) + body + b"\r\n",  # no last chunk
            chunk(body, 1)[: rng.randrange(1, 10 + 4 * len(body))],
            b"0\r\n\r\n" + body,
            b" %x \r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        ]
    )
    head = f"POST {rng.choice(FAVOURITE_PATHS)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += rng.choice(
        [
            "Transfer-Encoding: chunked\r\n",
            f"Transfer-Encoding: chunked\r\nContent-Length: {len(body)}\r\n",
            "Transfer-Encoding: CHUNKED\r\n",
            "Transfer-Encoding: xchunked\r\n",
        ]
    )
    return head.encode() + b"\r\n" + encoded


def huge_headers(rng: random.Random) -> bytes:
    body = b'{"clientKey":"x"}'
    if rng.random() < 0.5:
        extra = "".join(f"X-H{i}: {'v' * 20}\r\n" for i in range(rng.choice([200, 2000, 5000])))
    else:
        extra = f"X-Big: {'b' * rng.choice([10_000, 100_000, 300_000])}\r\n"
    head = f"POST {rng.choice(FAVOURITE_PATHS)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


# --- the exchange -----------------------------------------------------------------------


@dataclass
class Outcome:
    """What came back for one input."""

    case: Case
    raw: bytes
    statuses: list[int]
    bodies: list[bytes]


def exchange(port: int, data: bytes, patience: float) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it.

    A server still waiting after `patience` seconds of silence (the request is incomplete)
    gets our end of the connection closed; then it has 5 more seconds to finish.
    """
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before the end
            sock.sendall(data)
        half_closed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 5.0 if half_closed else patience)
            if not ready:
                if half_closed:
                    break
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    break
                half_closed = True
                continue
            try:
                piece = sock.recv(65536)
            except OSError:
                break
            if not piece:
                break
            received += piece
    return bytes(received)


RESPONSE_HEAD = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


def split_responses(raw: bytes) -> tuple[list[int], list[bytes]]:
    """The status and body of each response in a stream of them."""
    statuses: list[int] = []
    bodies: list[bytes] = []
    at = 0
    while at < len(raw):
        match = RESPONSE_HEAD.match(raw, at)
        if match is None:
            break
        end = raw.find(b"\r\n\r\n", match.end() - 2)
        if end < 0:
            statuses.append(int(match[1]))
            bodies.append(b"")
            break
        head = raw[match.end() : end].lower()
        length = re.search(rb"(?:^|\r\n)content-length:\s*(\d+)", head)
        size = int(length[1]) if length else len(raw) - end - 4
        statuses.append(int(match[1]))
        bodies.append(raw[end + 4 : end + 4 + size])
        at = end + 4 + size
    return statuses, bodies


def run_case(port: int, case: Case, session: bytes = b"", worker: bytes = b"") -> Outcome:
    data = case.data.replace(SESSION.encode(), session) if session else case.data
    data = data.replace(WORKER.encode(), worker) if worker else data
    raw = exchange(port, data, 10.0 if case.valid_framing else 0.3)
    statuses, bodies = split_responses(raw)
    return Outcome(case, raw, statuses, bodies)


# What the server says for an internal error (routing.guarded): its description, in every
# dialect that gives one, and the code the Anti-Captcha family and 2Captcha's legacy API give
# it (their "no slot" code, which nothing else answers here: no per-key limit is set).
INTERNAL_ERROR = b"Temporary server error; try again"
INTERNAL_ERROR_MARKERS = (INTERNAL_ERROR, b"ERROR_NO_SLOT_AVAILABLE")


def problems(outcome: Outcome) -> list[str]:
    """What is wrong with one answer."""
    case, found = outcome.case, []
    if any(status >= 500 for status in outcome.statuses):
        found.append(f"answered {outcome.statuses}")
    if case.valid_framing and not outcome.statuses:
        found.append(f"no answer to a well-formed request: {outcome.raw[:200]!r}")
    if b"Traceback" in outcome.raw:
        found.append("a stack trace in the answer")
    if any(marker in outcome.raw for marker in INTERNAL_ERROR_MARKERS):
        found.append("answered an internal error")
    if case.valid_framing and outcome.statuses:
        first, body = outcome.statuses[0], outcome.bodies[0]
        path = case.path.split("?")[0]
        created = (
            (path in ("/createTask", "/anticaptcha/createTask") and b'"taskId"' in body)
            or (path == "/in.php" and body.startswith(b"OK|"))
            or (path == "/in.php" and b'"status":1' in body)
            or (path == "/task/submit" and first == 200)
        )
        if created:
            found.append(f"a task was created: {first} {body[:200]!r}")
    return found


def describe(outcome: Outcome, trouble: list[str]) -> str:
    case = outcome.case
    return (
        f"input #{case.number} ({case.kind}, make_input({case.number})): {'; '.join(trouble)}\n"
        f"  sent {len(case.data)} bytes: {case.data[:300]!r}\n"
        f"  got: {outcome.raw[:300]!r}"
    )


@dataclass
class Findings:
    """What a fuzz run found."""

    sent: int = 0
    problems: list[str] = field(default_factory=list)


def fuzz(server: CapgateServer, session: bytes = b"", worker: bytes = b"") -> Findings:
    """Send inputs until MAX_INPUTS or MAX_SECONDS have gone by."""
    started = time.monotonic()
    findings = Findings()
    number = 0
    with ThreadPoolExecutor(THREADS) as pool:
        while findings.sent < MAX_INPUTS and time.monotonic() - started < MAX_SECONDS:
            size = min(THREADS * 4, MAX_INPUTS - findings.sent)
            batch = [make_input(n) for n in range(number, number + size)]
            number += size
            for outcome in pool.map(lambda c: run_case(server.port, c, session, worker), batch):
                trouble = problems(outcome)
                if trouble:
                    findings.problems.append(describe(outcome, trouble))
            findings.sent += len(batch)
    return findings


LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", re.MULTILINE)


def logged_errors(server: CapgateServer) -> list[str]:
    """The server's log records that report an internal error."""
    text = server.log.read_text(errors="replace")
    starts = [0, *(m.start() for m in LOG_RECORD.finditer(text)), len(text)]
    records = [text[a:b] for a, b in itertools.pairwise(starts)]
    errors = []
    for record in records:
        head = record.split("\n", 1)[0]
        if " ERROR " in head or " CRITICAL " in head or "Traceback" in record:
            errors.append(record)
    return errors


def test_raw_bytes_never_crash_the_server_nor_change_the_store(
    start_server: ServerFactory,
) -> None:
    started = time.monotonic()
    server = start_server(admin_key=ADMIN)
    made = run_cli("keys", "create", "--worker", "--name", "fuzz", "--data", str(server.data))
    assert made.returncode == 0, made.stderr
    worker = made.stdout.strip().encode()
    before = server.db_counts()
    assert before == (0, 10_000_000)
    # A real session, so some inputs reach the signed-in dashboard (until one logs out).
    login = server.http.post("/dashboard/login", data={"key": ADMIN}, follow_redirects=False)
    session = login.headers["set-cookie"].split(";")[0].partition("=")[2].encode()
    with HealthProbe(server.base) as probe:
        findings = fuzz(server, session, worker)
    errors = logged_errors(server)
    print(
        f"\nraw fuzz: {findings.sent} inputs tried (seed {SEED}, {THREADS} connections at a"
        f" time) in {time.monotonic() - started:.1f} s; {len(findings.problems)} with a problem;"
        f" /healthz probed {len(probe.timings)} times, slowest {probe.worst * 1000:.0f} ms"
    )
    probe.check()
    # The server is alive and well, and nothing stored changed: no task, no money moved.
    assert server.process is not None and server.process.poll() is None, "the server died"
    assert server.http.get("/healthz").status_code == 200
    assert server.db_counts() == before, "the fuzz changed the store"
    balance = server.post("/getBalance", {"clientKey": BOOTSTRAP_KEY})["balance"]
    assert balance == 10
    assert findings.problems == [], "\n".join(findings.problems[:10])
    assert errors == [], "\n".join(errors[:10])
    assert findings.sent >= 300, "too few inputs to mean much"


def test_a_task_id_of_non_decimal_digits_is_simply_not_found(start_server: ServerFactory) -> None:
    server = start_server(local_solving="false")
    key = BOOTSTRAP_KEY
    rest = request_bytes("GET", "/task/result/%C2%B2", [f"x-api-key: {key}"], b"")
    statuses, bodies = split_responses(exchange(server.port, rest, 3.0))
    assert (statuses, bodies) == ([404], [b'{"status":"NOT_FOUND"}'])
    for task_id in ("²", "①"):
        answer = server.post("/getTaskResult", {"clientKey": key, "taskId": task_id})
        assert answer["errorCode"] == "ERROR_NO_SUCH_CAPCHA_ID", answer
    form = {"key": key, "action": "get", "id": "²"}
    assert server.http.post("/res.php", data=form).text == "ERROR_WRONG_CAPTCHA_ID"
    form = {"key": key, "action": "get", "ids": "1,²", "json": "1"}
    answer = server.http.post("/res.php", data=form).json()
    assert answer["request"] == "ERROR_WRONG_CAPTCHA_ID|ERROR_WRONG_CAPTCHA_ID", answer
    assert logged_errors(server) == []
