"""2Captcha's legacy API: /in.php and /res.php.

Requests are query strings, urlencoded forms or multipart uploads (a `file` part). Answers
are plain text (`OK|<id>`, `CAPCHA_NOT_READY`, `OK|<answer>`, a bare number for the
balance, `ERROR_...`) or, with `json=1`, `{"status": 1|0, "request": ...}`. The
`2captcha-python` SDK never asks for JSON and treats any body containing ERROR as an error.
"""

from __future__ import annotations

import base64
import binascii
from email.parser import BytesParser
from email.policy import HTTP
from urllib.parse import parse_qsl

import msgspec

from capgate.dialects import ids
from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
    format_money,
)

Form = dict[str, str | bytes]

ERRORS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "ERROR_BAD_PARAMETERS",
    ErrorCode.KEY_DOES_NOT_EXIST: "ERROR_KEY_DOES_NOT_EXIST",
    ErrorCode.ZERO_BALANCE: "ERROR_ZERO_BALANCE",
    ErrorCode.TASK_ABSENT: "ERROR_BAD_PARAMETERS",
    ErrorCode.TASK_NOT_SUPPORTED: "ERROR_NO_SUCH_METHOD",
    ErrorCode.ZERO_CAPTCHA_FILESIZE: "ERROR_ZERO_CAPTCHA_FILESIZE",
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: "ERROR_TOO_BIG_CAPTCHA_FILESIZE",
    ErrorCode.REQUEST_TOO_LARGE: "ERROR_TOO_BIG_CAPTCHA_FILESIZE",
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: "ERROR_IMAGE_TYPE_NOT_SUPPORTED",
    ErrorCode.TASK_NOT_FOUND: "ERROR_WRONG_CAPTCHA_ID",
    ErrorCode.POLL_LIMIT_EXCEEDED: "ERROR_WRONG_CAPTCHA_ID",
    ErrorCode.NOT_REPORTABLE: "ERROR_WRONG_CAPTCHA_ID",
    ErrorCode.CAPTCHA_UNSOLVABLE: "ERROR_CAPTCHA_UNSOLVABLE",
    ErrorCode.TASK_TIMEOUT: "ERROR_CAPTCHA_UNSOLVABLE",
    ErrorCode.NO_SUCH_METHOD: "ERROR_EMPTY_ACTION",
    ErrorCode.INTERNAL: "ERROR_NO_SLOT_AVAILABLE",
}

ACTIONS = ("get", "get2", "getbalance", "reportbad", "reportgood")

# in.php image options, by their legacy name -> (the JSON family's name, boolean or not).
_IMAGE_OPTIONS = {
    "phrase": ("phrase", True),
    "regsense": ("case", True),
    "numeric": ("numeric", False),
    "calc": ("math", True),
    "min_len": ("minLength", False),
    "max_len": ("maxLength", False),
    "language": ("language", False),
    "lang": ("lang", False),
    "textinstructions": ("comment", False),
}

_encoder = msgspec.json.Encoder()


class ResRequest(msgspec.Struct, frozen=True):
    """A parsed res.php request."""

    key: str
    action: str
    task_ids: list[int]
    as_json: bool


def parse_form(content_type: bytes | None, query: bytes, body: bytes) -> Form:
    """Query-string parameters merged with an urlencoded or multipart body."""
    form: Form = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    kind = (content_type or b"").split(b";")[0].strip().lower()
    if kind == b"multipart/form-data":
        form.update(_multipart(content_type or b"", body))
    elif body and kind in (b"application/x-www-form-urlencoded", b""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise CapgateError(ErrorCode.BAD_REQUEST, "The form is not UTF-8") from None
        form.update(parse_qsl(text, keep_blank_values=True))
    return form


def _multipart(content_type: bytes, body: bytes) -> Form:
    head = b"Content-Type: " + content_type + b"\r\nMIME-Version: 1.0\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise CapgateError(ErrorCode.BAD_REQUEST, "The multipart body cannot be read")
    form: Form = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            form[name] = data
        else:
            form[name] = data.decode("utf-8", "replace")
    return form


def _text(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def wants_json(form: Form) -> bool:
    """True if the client sent json=1."""
    return _text(form, "json") == "1"


def parse_in(form: Form) -> tuple[str, TaskSpec, bool]:
    """An in.php request: the key, the task, and whether JSON was asked for."""
    key = _text(form, "key")
    if not key:
        raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "key is missing")
    method = _text(form, "method").lower()
    as_json = wants_json(form)
    if method in ("post", "base64", ""):
        return key, TaskSpec(TaskType.IMAGE_TO_TEXT, _image_params(form), _image(form)), as_json
    site_key = _text(form, "googlekey") or _text(form, "sitekey")
    page_url = _text(form, "pageurl")
    if not site_key:
        raise CapgateError(ErrorCode.BAD_REQUEST, "googlekey or sitekey is missing")
    if not page_url:
        raise CapgateError(ErrorCode.BAD_REQUEST, "pageurl is missing")
    if method == "userrecaptcha":
        version3 = _text(form, "version").lower() == "v3"
        enterprise = _text(form, "enterprise") == "1"
        task_type = (
            TaskType.RECAPTCHA_V3
            if version3
            else TaskType.RECAPTCHA_V2_ENTERPRISE
            if enterprise
            else TaskType.RECAPTCHA_V2
        )
    elif method == "hcaptcha":
        task_type = TaskType.HCAPTCHA
    elif method == "turnstile":
        task_type = TaskType.TURNSTILE
    else:
        raise CapgateError(ErrorCode.TASK_NOT_SUPPORTED, f"method {method!r} is not supported")
    params = {"websiteKey": site_key, "websiteURL": page_url, "vendorType": method}
    user_agent = _text(form, "userAgent")
    if user_agent:
        params["userAgent"] = user_agent
    return key, TaskSpec(task_type, params), as_json


def _image(form: Form) -> bytes:
    file = form.get("file")
    if isinstance(file, bytes):
        return file
    body = _text(form, "body")
    if not body:
        raise CapgateError(ErrorCode.ZERO_CAPTCHA_FILESIZE, "No file part and no body")
    if body.startswith("data:"):
        body = body.partition(",")[2]
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CapgateError(ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, "body is not base64") from None


def _image_params(form: Form) -> dict[str, object]:
    params: dict[str, object] = {"vendorType": "normal"}
    for legacy_name, (name, boolean) in _IMAGE_OPTIONS.items():
        value = _text(form, legacy_name)
        if not value:
            continue
        if boolean:
            params[name] = value == "1"
        elif value.isdigit():
            params[name] = int(value)
        else:
            params[name] = value
    return params


def parse_res(form: Form) -> ResRequest:
    """A res.php request: key, action, the task ids (`id` or `ids`), JSON or not."""
    key = _text(form, "key")
    if not key:
        raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "key is missing")
    action = _text(form, "action").lower()
    if action not in ACTIONS:
        raise CapgateError(ErrorCode.NO_SUCH_METHOD, f"action {action!r} is not supported")
    task_ids: list[int] = []
    if action != "getbalance":
        raw = _text(form, "ids") or _text(form, "id")
        for part in raw.split(","):
            task_id = ids.parse_id(part)
            if task_id is None:
                raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"{part!r} is not a captcha id")
            task_ids.append(task_id)
    return ResRequest(key, action, task_ids, wants_json(form))


def render_in(task: Task, as_json: bool) -> bytes:
    """The in.php answer: the new captcha id."""
    if as_json:
        return _encoder.encode({"status": 1, "request": str(task.id)})
    return f"OK|{task.id}".encode()


def _answer(task: Task) -> str:
    solution = task.solution
    if solution is None:
        return ""
    return (solution.text if task.type is TaskType.IMAGE_TO_TEXT else solution.token) or ""


def render_res_task(task: Task, as_json: bool, with_price: bool) -> bytes:
    """One task's state: not ready, its answer, or its error."""
    if task.status is TaskStatus.FAILED:
        code = task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE
        return render_error(CapgateError(code, task.error_description or ""), as_json)
    if task.status is not TaskStatus.READY:
        return b'{"status":0,"request":"CAPCHA_NOT_READY"}' if as_json else b"CAPCHA_NOT_READY"
    answer = _answer(task)
    price = format_money(task.cost)
    if as_json:
        out: dict[str, object] = {"status": 1, "request": answer}
        if with_price:
            out["price"] = price
        if task.solution is not None and task.solution.user_agent:
            out["useragent"] = task.solution.user_agent
        return _encoder.encode(out)
    return f"OK|{answer}|{price}".encode() if with_price else f"OK|{answer}".encode()


def render_res_many(tasks: list[Task | None], as_json: bool) -> bytes:
    """Several tasks' states joined by '|': an answer, CAPCHA_NOT_READY or an error each."""
    parts = []
    for task in tasks:
        if task is None:
            parts.append(ERRORS[ErrorCode.TASK_NOT_FOUND])
        elif task.status is TaskStatus.READY:
            parts.append(_answer(task))
        elif task.status is TaskStatus.FAILED:
            parts.append(ERRORS[task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE])
        else:
            parts.append("CAPCHA_NOT_READY")
    joined = "|".join(parts)
    return _encoder.encode({"status": 1, "request": joined}) if as_json else joined.encode()


def render_balance(key: Key, as_json: bool) -> bytes:
    """The balance as a bare number (or in the JSON envelope)."""
    balance = format_money(key.balance, 6).rstrip("0").rstrip(".") or "0"
    if as_json:
        return _encoder.encode({"status": 1, "request": balance})
    return balance.encode()


def render_reported(as_json: bool) -> bytes:
    """The answer to reportbad / reportgood."""
    if as_json:
        return b'{"status":1,"request":"OK_REPORT_RECORDED"}'
    return b"OK_REPORT_RECORDED"


def render_error(error: CapgateError, as_json: bool) -> bytes:
    """The vendor's ERROR_ string, or {"status": 0, "request": ..., "error_text": ...}."""
    code = ERRORS[error.code]
    if as_json:
        return _encoder.encode({"status": 0, "request": code, "error_text": error.description})
    return code.encode()
