"""2Captcha's legacy API: /in.php and /res.php.

Requests are query strings, urlencoded forms or multipart uploads (a `file` part). Answers
are plain text (`OK|<id>`, `CAPCHA_NOT_READY`, `OK|<answer>`, a bare number for the
balance, `ERROR_...`) or, with `json=1`, `{"status": 1|0, "request": ...}`, always on
HTTP 200. The `2captcha-python` SDK (twocaptcha/api.py) never asks for JSON, treats any
other HTTP status as a network error and any body containing ERROR as an API error.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from capgate import forms
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

# The legacy error string of each internal error, from 2Captcha's in.php / res.php error
# lists (mirrored by docs.captchaai.com/api/api-error-handling and uCaptcha's error table).
# Every one contains "ERROR": 2captcha-python detects errors by that substring alone.
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
    # A result polled past the cap is gone, as if expired.
    ErrorCode.POLL_LIMIT_EXCEEDED: "ERROR_WRONG_CAPTCHA_ID",
    # The vendor's REPORT_NOT_RECORDED lacks "ERROR", so the SDK would take it for success.
    ErrorCode.NOT_REPORTABLE: "ERROR_WRONG_CAPTCHA_ID",
    # 2Captcha's own answer to a report too late or from a key that reports too much.
    ErrorCode.REPORT_NOT_RECORDED: "ERROR_REPORT_NOT_RECORDED",
    ErrorCode.IP_NOT_ALLOWED: "ERROR_IP_NOT_ALLOWED",
    ErrorCode.IDEMPOTENCY_CONFLICT: "ERROR_BAD_PARAMETERS",
    ErrorCode.NO_SLOT: "ERROR_NO_SLOT_AVAILABLE",
    ErrorCode.CAPTCHA_UNSOLVABLE: "ERROR_CAPTCHA_UNSOLVABLE",
    ErrorCode.TASK_TIMEOUT: "ERROR_CAPTCHA_UNSOLVABLE",
    # res.php without a known action (uCaptcha's table: "Missing action parameter").
    ErrorCode.NO_SUCH_METHOD: "ERROR_EMPTY_ACTION",
    ErrorCode.INTERNAL: "ERROR_NO_SLOT_AVAILABLE",
}

NOT_READY = "CAPCHA_NOT_READY"  # The vendor's spelling.
REPORTED = "OK_REPORT_RECORDED"
ACTIONS = ("get", "get2", "getbalance", "reportbad", "reportgood")

# in.php image options -> (the Anti-Captcha family's name, kind): 2Captcha's "normal captcha"
# parameters; 2captcha-python sends regsense / min_len / max_len / textinstructions / lang.
_IMAGE_OPTIONS: dict[str, tuple[str, str]] = {
    "phrase": ("phrase", "bool"),
    "regsense": ("case", "bool"),
    "numeric": ("numeric", "int"),
    "calc": ("math", "bool"),
    "min_len": ("minLength", "int"),
    "max_len": ("maxLength", "int"),
    "language": ("language", "int"),
    "lang": ("lang", "str"),
    "textinstructions": ("comment", "str"),
    # The page the captcha is on: names the task's site, for learning (docs/learning.md).
    "pageurl": ("websiteURL", "str"),
}
# in.php token-task options -> the Anti-Captcha family's names (2Captcha's method pages;
# 2captcha-python sends `userAgent` for reCAPTCHA and `useragent` for Turnstile).
_TOKEN_OPTIONS: dict[str, str] = {
    "userAgent": "userAgent",
    "useragent": "userAgent",
    "action": "pageAction",
    "min_score": "minScore",
    "invisible": "isInvisible",
    "data-s": "recaptchaDataSValue",
    "cookies": "cookies",
    "proxy": "proxy",
    "proxytype": "proxyType",
    "data": "data",
    "pagedata": "pagedata",
    "domain": "apiDomain",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
# 2Captcha's documented ceiling for res.php?ids=; each id costs a store read.
MAX_IDS = 100
# Integer options longer than this are out of range (the store keeps 64-bit integers).
_MAX_INT_DIGITS = 18

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class ResRequest(msgspec.Struct, frozen=True):
    """A parsed res.php request."""

    key: str
    action: str
    task_ids: list[int]
    as_json: bool
    # True when the ids came as `ids=` (answers joined by '|', without "OK|"), even for one.
    many: bool = False


def parse_form(content_type: bytes | None, query: bytes, body: bytes) -> Form:
    """Query-string parameters merged with an urlencoded, multipart or JSON body."""
    return add_body(parse_query(query), content_type, body)


def parse_query(query: bytes) -> Form:
    """The query string's parameters."""
    try:
        return dict(forms.urlencoded(query))
    except forms.FormError as exc:
        raise CapgateError(ErrorCode.BAD_REQUEST, str(exc)) from None


def add_body(query_form: Form, content_type: bytes | None, body: bytes) -> Form:
    """The query's form merged with the body's fields (which win).

    It runs on the event loop before the key is checked: capgate.forms reads a body in
    bounded, linear time (about 8 ms for the worst megabyte), and any body it will not
    read is a bad request.
    """
    form = dict(query_form)
    try:
        kind = (content_type or b"").split(b";")[0].strip().lower()
        if kind == b"multipart/form-data" and body.strip():
            form.update(_multipart(content_type or b"", body))
        elif (kind == b"application/json" and body.strip()) or body.lstrip()[:1] == b"{":
            # A JSON object whatever the declared type: node-fetch labels a string body
            # text/plain, and the `2captcha` npm package sends its JSON so (no form
            # field's name starts with a brace).
            form.update(_json_form(body))
        elif body and kind in (b"application/x-www-form-urlencoded", b""):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise CapgateError(ErrorCode.BAD_REQUEST, "The form is not UTF-8") from None
            form.update(forms.urlencoded(body))
    except forms.FormError as exc:
        raise CapgateError(ErrorCode.BAD_REQUEST, str(exc)) from None
    return form


def _multipart(content_type: bytes, body: bytes) -> Form:
    form: Form = {}
    for part in forms.multipart(content_type, body):
        # Uploads stay bytes; `file` too when a client leaves out its filename.
        if part.filename is not None or part.name == "file":
            form[part.name] = part.data
        else:
            form[part.name] = part.data.decode(part.charset, "replace")
    if not form:
        raise CapgateError(ErrorCode.BAD_REQUEST, "The multipart body has no named field")
    return form


def _json_form(body: bytes) -> Form:
    try:
        value = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        raise CapgateError(ErrorCode.BAD_REQUEST, "The JSON body cannot be read") from None
    if not isinstance(value, dict):
        raise CapgateError(ErrorCode.BAD_REQUEST, "The JSON body must be an object")
    if len(value) > forms.MAX_FIELDS:
        raise CapgateError(
            ErrorCode.BAD_REQUEST, f"The JSON body has more than {forms.MAX_FIELDS} fields"
        )
    form: Form = {}
    for name, item in value.items():
        if isinstance(item, bool):
            form[str(name)] = "1" if item else "0"
        elif isinstance(item, str | int | float):
            form[str(name)] = str(item)
    return form


def _text(form: Form, name: str) -> str:
    value = form.get(name, "")
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text.strip()


def wants_json(form: Form) -> bool:
    """True if the client sent json=1."""
    return _text(form, "json").lower() in _TRUE


def wants_cors(form: Form) -> bool:
    """True if the client sent header_acao=1 (answer with Access-Control-Allow-Origin: *)."""
    return _text(form, "header_acao").lower() in _TRUE


def parse_in(form: Form) -> tuple[str, TaskSpec, bool]:
    """An in.php request: the key, the task, and whether JSON was asked for."""
    key = _text(form, "key")
    if not key:
        raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "key is missing")
    method = _text(form, "method").lower()
    as_json = wants_json(form)
    enterprise = _text(form, "enterprise").lower() in _TRUE
    # No method at all is an image upload, as in Anti-Captcha's legacy in.php.
    if method in ("post", "base64", ""):
        if "textcaptcha" in form and "file" not in form and not _text(form, "body"):
            raise CapgateError(ErrorCode.TASK_NOT_SUPPORTED, "Text captchas are not supported")
        options = {**_image_params(form), **_pingback(form)}
        return key, TaskSpec(TaskType.IMAGE_TO_TEXT, options, _image(form)), as_json
    if method == "userrecaptcha":
        version3 = _text(form, "version").lower() == "v3"
        if version3:
            # tasknames.py maps RecaptchaV3EnterpriseTask to the same internal type.
            task_type = TaskType.RECAPTCHA_V3
        elif enterprise:
            task_type = TaskType.RECAPTCHA_V2_ENTERPRISE
        else:
            task_type = TaskType.RECAPTCHA_V2
        site_key = _text(form, "googlekey") or _text(form, "sitekey")
    elif method == "hcaptcha":
        task_type = TaskType.HCAPTCHA
        site_key = _text(form, "sitekey")
    elif method == "turnstile":
        task_type = TaskType.TURNSTILE
        site_key = _text(form, "sitekey")
    else:
        raise CapgateError(ErrorCode.TASK_NOT_SUPPORTED, f"method {method!r} is not supported")
    # 2Captcha answers ERROR_GOOGLEKEY / ERROR_PAGEURL here; capgate has one code for both.
    if not site_key:
        raise CapgateError(ErrorCode.BAD_REQUEST, "googlekey or sitekey is missing")
    page_url = _text(form, "pageurl")
    if not page_url:
        raise CapgateError(ErrorCode.BAD_REQUEST, "pageurl is missing")
    params: dict[str, object] = {
        "websiteKey": site_key,
        "websiteURL": page_url,
        "vendorType": method,
    }
    if task_type is TaskType.RECAPTCHA_V3 and enterprise:
        params["isEnterprise"] = True
    for legacy_name, name in _TOKEN_OPTIONS.items():
        value = _text(form, legacy_name)
        if value and name not in params:
            params[name] = value
    if "isInvisible" in params:
        params["isInvisible"] = str(params["isInvisible"]).lower() in _TRUE
    if "minScore" in params:
        params["minScore"] = _number(str(params["minScore"]), "min_score")
    params.update(_pingback(form))
    return key, TaskSpec(task_type, params), as_json


def _pingback(form: Form) -> dict[str, object]:
    """2Captcha's pingback URL, delivered in its own style (id and code, form-encoded)."""
    url = _text(form, "pingback")
    return {"callbackUrl": url, "callbackStyle": "pingback"} if url else {}


def _number(value: str, name: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CapgateError(ErrorCode.BAD_REQUEST, f"{name} must be a number") from None


def _image(form: Form) -> bytes:
    file = form.get("file")
    if isinstance(file, bytes) and file:
        return file
    value = form.get("body", "")
    body = value.decode("latin-1") if isinstance(value, bytes) else value
    if not body.strip():
        raise CapgateError(ErrorCode.ZERO_CAPTCHA_FILESIZE, "No file part and no body")
    if body.lstrip().startswith("data:"):
        body = body.partition(",")[2]
    # Line breaks and padding whitespace are tolerated; failing that, spaces are taken for
    # the '+' signs that a form sent without percent-encoding turns into spaces.
    for candidate in ("".join(body.split()), "".join(body.replace(" ", "+").split())):
        try:
            return base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            continue
    raise CapgateError(ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, "body is not base64")


def _image_params(form: Form) -> dict[str, object]:
    params: dict[str, object] = {"vendorType": "normal"}
    # 2Captcha's older flag for Cyrillic text: what `language=1` says today.
    if _text(form, "is_russian").lower() in _TRUE and not _text(form, "language"):
        params["language"] = 1
    for legacy_name, (name, kind) in _IMAGE_OPTIONS.items():
        value = _text(form, legacy_name)
        if not value:
            continue
        if kind == "bool":
            params[name] = value.lower() in _TRUE
        elif kind == "int" and value.isascii() and value.lstrip("-").isdigit():
            # Bounded before int(): Python refuses over 4,300 digits with a ValueError.
            if len(value.lstrip("-")) > _MAX_INT_DIGITS:
                raise CapgateError(ErrorCode.BAD_REQUEST, f"{legacy_name} is out of range")
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
    as_json = wants_json(form)
    if action == "getbalance":
        return ResRequest(key, action, [], as_json)
    many_ids = _text(form, "ids")
    if many_ids and action in ("get", "get2"):
        # Split no further than the cap: each id left costs a store read.
        listed = [part for part in many_ids.split(",", MAX_IDS) if part.strip()]
        if len(listed) > MAX_IDS:
            raise CapgateError(ErrorCode.BAD_REQUEST, f"ids lists more than {MAX_IDS} ids")
        # Each id keeps its slot; a malformed one becomes 0, which no task has, so its
        # slot reads ERROR_WRONG_CAPTCHA_ID like any unknown id.
        slots = [ids.parse_id(part) or 0 for part in listed]
        if not slots:
            raise CapgateError(ErrorCode.TASK_NOT_FOUND, "ids lists no captcha id")
        return ResRequest(key, action, slots, as_json, many=True)
    raw = _text(form, "id") or many_ids
    task_id = ids.parse_id(raw)
    if task_id is None:
        raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"{raw!r} is not a captcha id")
    return ResRequest(key, action, [task_id], as_json)


def render_in(task: Task, as_json: bool) -> bytes:
    """The in.php answer: the new captcha id, `OK|<id>` or `{"status":1,"request":"<id>"}`."""
    if as_json:
        return _encoder.encode({"status": 1, "request": str(task.id)})
    return f"OK|{task.id}".encode()


def _answer(task: Task) -> str:
    solution = task.solution
    if solution is None:
        return ""
    return (solution.text if task.type is TaskType.IMAGE_TO_TEXT else solution.token) or ""


def render_res_task(task: Task, as_json: bool, with_price: bool) -> bytes:
    """One task's state: not ready, its answer (`get2` adds the price), or its error."""
    if task.status is TaskStatus.FAILED:
        code = task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE
        return render_error(CapgateError(code, task.error_description or ""), as_json)
    if task.status is not TaskStatus.READY:
        # JSON status 0 with CAPCHA_NOT_READY means "wait"; the SDK polls again.
        return b'{"status":0,"request":"CAPCHA_NOT_READY"}' if as_json else NOT_READY.encode()
    answer = _answer(task)
    price = format_money(task.cost)
    if as_json:
        out: dict[str, object] = {"status": 1, "request": answer}
        if with_price:
            out["price"] = price
        # 2Captcha's JSON answers for Turnstile and hCaptcha carry the solver's user agent.
        if task.solution is not None and task.solution.user_agent:
            out["useragent"] = task.solution.user_agent
        return _encoder.encode(out)
    return f"OK|{answer}|{price}".encode() if with_price else f"OK|{answer}".encode()


def render_res_many(tasks: list[Task | None], as_json: bool) -> bytes:
    """Answers for `ids=`, in order, joined by '|': the answer, CAPCHA_NOT_READY or an error."""
    parts = []
    for task in tasks:
        if task is None:
            parts.append(ERRORS[ErrorCode.TASK_NOT_FOUND])
        elif task.status is TaskStatus.READY:
            parts.append(_answer(task))
        elif task.status is TaskStatus.FAILED:
            parts.append(ERRORS[task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE])
        else:
            parts.append(NOT_READY)
    joined = "|".join(parts)
    return _encoder.encode({"status": 1, "request": joined}) if as_json else joined.encode()


def render_balance(key: Key, as_json: bool) -> bytes:
    """The balance as a bare number such as `9.999` (or in the JSON envelope, as a string)."""
    balance = format_money(key.balance, 6).rstrip("0").rstrip(".")
    if balance in ("", "-0"):
        balance = "0"
    if as_json:
        return _encoder.encode({"status": 1, "request": balance})
    return balance.encode()


def render_reported(as_json: bool) -> bytes:
    """The answer to reportbad / reportgood: OK_REPORT_RECORDED."""
    if as_json:
        return b'{"status":1,"request":"OK_REPORT_RECORDED"}'
    return REPORTED.encode()


def render_error(error: CapgateError, as_json: bool) -> bytes:
    """The vendor's ERROR_ string, or {"status": 0, "request": ..., "error_text": ...}."""
    code = ERRORS[error.code]
    if as_json:
        return _encoder.encode(
            {"status": 0, "request": code, "error_text": error.description or code}
        )
    return code.encode()
