"""uCaptcha's REST dialect: POST /task/submit and GET /task/result/:id (seed 000).

The key comes in the `x-api-key` header (recommended) or `?token=` (seed 000). Unlike the
JSON family, this dialect answers with real HTTP status codes, as its vendor documents
(ucaptcha.net/docs/api/error-codes: 401 bad key, 402 no balance, 400 bad input, 404 unknown
task; ucaptcha.net/docs/api/overview: 429 when rate-limited). Task ids are UUIDs.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from capgate.dialects import ids
from capgate.dialects.anticaptcha import parse_task, read_object
from capgate.model import CapgateError, ErrorCode, Task, TaskSpec, TaskStatus, TaskType

# (HTTP status, error code) of each internal error. Codes and statuses from uCaptcha's error
# table (ucaptcha.net/docs/api/error-codes) where it lists them; ERROR_CAPTCHA_UNSOLVABLE is
# HTTP 200 there. The rest keep the family's ERROR_* names with the fitting HTTP status.
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (400, "ERROR_BAD_PARAMETERS"),
    ErrorCode.KEY_DOES_NOT_EXIST: (401, "ERROR_KEY_DOES_NOT_EXIST"),
    ErrorCode.ZERO_BALANCE: (402, "ERROR_ZERO_BALANCE"),
    ErrorCode.TASK_ABSENT: (400, "ERROR_BAD_PARAMETERS"),
    ErrorCode.TASK_NOT_SUPPORTED: (400, "TASK_NOT_SUPPORTED"),
    ErrorCode.ZERO_CAPTCHA_FILESIZE: (400, "ERROR_ZERO_CAPTCHA_FILESIZE"),
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: (400, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
    # The request body itself is over the server's limit: HTTP's own answer for that.
    ErrorCode.REQUEST_TOO_LARGE: (413, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: (400, "ERROR_IMAGE_TYPE_NOT_SUPPORTED"),
    ErrorCode.TASK_NOT_FOUND: (404, "ERROR_WRONG_CAPTCHA_ID"),
    ErrorCode.POLL_LIMIT_EXCEEDED: (429, "ERROR_TOO_MANY_REQUESTS"),
    ErrorCode.NOT_REPORTABLE: (400, "ERROR_BAD_PARAMETERS"),
    ErrorCode.REPORT_NOT_RECORDED: (400, "ERROR_BAD_PARAMETERS"),
    ErrorCode.IP_NOT_ALLOWED: (403, "ERROR_IP_NOT_ALLOWED"),
    ErrorCode.IDEMPOTENCY_CONFLICT: (409, "ERROR_IDEMPOTENCY_CONFLICT"),
    ErrorCode.NO_SLOT: (429, "ERROR_TOO_MANY_REQUESTS"),
    ErrorCode.CAPTCHA_UNSOLVABLE: (200, "ERROR_CAPTCHA_UNSOLVABLE"),
    ErrorCode.TASK_TIMEOUT: (200, "ERROR_CAPTCHA_UNSOLVABLE"),
    ErrorCode.NO_SUCH_METHOD: (405, "ERROR_NO_SUCH_METHOD"),
    ErrorCode.INTERNAL: (503, "NO_PROVIDERS_AVAILABLE"),
}

# Short type names a REST client may use, besides every vendor name tasknames.py knows.
# Matched after lower-casing and dropping spaces, '-' and '_' ("reCAPTCHA v2", "recaptcha_v2").
_SHORT_TYPES: dict[str, str] = {
    "image": "ImageToTextTask",
    "imagetotext": "ImageToTextTask",
    "ocr": "ImageToTextTask",
    "recaptcha": "RecaptchaV2TaskProxyless",
    "recaptchav2": "RecaptchaV2TaskProxyless",
    "recaptchav2enterprise": "RecaptchaV2EnterpriseTaskProxyless",
    "recaptchav3": "RecaptchaV3TaskProxyless",
    "recaptchav3enterprise": "RecaptchaV3TaskProxyless",
    "hcaptcha": "HCaptchaTaskProxyless",
    "turnstile": "TurnstileTaskProxyless",
    "cloudflareturnstile": "TurnstileTaskProxyless",
    "funcaptcha": "FunCaptchaTaskProxyless",
    "geetest": "GeeTestTaskProxyless",
}
_SEPARATORS = re.compile(r"[\s_-]+")
# Field names a REST client may use for the Anti-Captcha family's ones.
_FIELD_ALIASES = {
    "sitekey": "websiteKey",
    "siteKey": "websiteKey",
    "site_key": "websiteKey",
    "googlekey": "websiteKey",
    "url": "websiteURL",
    "pageurl": "websiteURL",
    "pageURL": "websiteURL",
    "page_url": "websiteURL",
    "websiteUrl": "websiteURL",
    "image": "body",
    "user_agent": "userAgent",
    "useragent": "userAgent",
}
# Credentials a client may repeat in the body; never stored with the task.
_KEY_FIELDS = frozenset({"clientKey", "token", "key", "api_key", "apiKey"})
_STATUS = {
    TaskStatus.QUEUED: "QUEUED",
    TaskStatus.RUNNING: "RUNNING",
    TaskStatus.READY: "SUCCESS",
    TaskStatus.FAILED: "FAILED",
}

_encoder = msgspec.json.Encoder()


def client_key(headers: list[tuple[bytes, bytes]], query: bytes) -> str:
    """The key from the `x-api-key` header, else from `?token=` (seed 000)."""
    for header, value in headers:
        # ASGI servers lower-case header names; a test client may not.
        if header.lower() == b"x-api-key" and value.strip():
            return value.strip().decode("latin-1")
    for param, text in parse_qsl(query.decode("latin-1")):
        if param == "token" and text.strip():
            return text.strip()
    raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "Send the API key as x-api-key or ?token=")


def parse_submit(body: bytes) -> TaskSpec:
    """The submit body: a task object, at the top level or under `task`."""
    request = read_object(body)
    raw = request.get("task", request)
    if raw is None or raw == "" or raw == {}:
        raise CapgateError(ErrorCode.TASK_ABSENT, "The request has no task")
    if not isinstance(raw, dict):
        raise CapgateError(ErrorCode.BAD_REQUEST, "task must be a JSON object")
    task: dict[str, Any] = {}
    for name, value in raw.items():
        field = _FIELD_ALIASES.get(str(name), str(name))
        if field in _KEY_FIELDS or (field in task and value in (None, "")):
            continue
        task[field] = value
    type_name = task.get("type")
    if isinstance(type_name, str):
        task["type"] = _SHORT_TYPES.get(_SEPARATORS.sub("", type_name.lower()), type_name)
    spec = parse_task(task)
    if isinstance(type_name, str):
        spec.params["vendorType"] = type_name  # The client's own word, not our alias.
    return spec


def parse_task_id(path_tail: str) -> int:
    """The task id in the path; a malformed one is simply not found."""
    task_id = ids.parse_id(path_tail.strip("/"))
    if task_id is None:
        raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"Task {path_tail!r} does not exist")
    return task_id


def render_submitted(task: Task) -> tuple[int, bytes]:
    """The submit answer: the `task_id` to poll (seed 000's name for it) and its status."""
    return 200, _encoder.encode(
        {"task_id": ids.to_uuid(task.id, task.created_at), "status": _STATUS[task.status]}
    )


def render_result(task: Task) -> tuple[int, bytes]:
    """The result answer, exactly per seed 000."""
    if task.status is TaskStatus.READY:
        solution = task.solution
        if task.type is TaskType.IMAGE_TO_TEXT:
            # Seed 000: "most return a token field" and its loops read result.token, so an
            # image's text is given both as `text` and as `token`.
            text = solution.text if solution and solution.text else ""
            result: dict[str, Any] = {"token": text, "text": text}
        else:
            result = {"token": solution.token if solution and solution.token else ""}
        if solution is not None and solution.user_agent:
            result["userAgent"] = solution.user_agent
        return 200, _encoder.encode({"status": "SUCCESS", "result": result})
    if task.status is TaskStatus.FAILED:
        return 200, _encoder.encode(
            {"status": "FAILED", "error": task.error_description or "Task failed"}
        )
    return 200, _encoder.encode({"status": _STATUS[task.status]})


def render_error(error: CapgateError) -> tuple[int, bytes]:
    """An error with the vendor's HTTP status; an unknown task is `{"status": "NOT_FOUND"}`."""
    status, code = ERRORS[error.code]
    if error.code is ErrorCode.TASK_NOT_FOUND:
        return status, b'{"status":"NOT_FOUND"}'
    # Seed 000's polling loops read `status` before anything else and stop on FAILED, so
    # every error body carries it: a bad key or a lost result must end the loop, not crash it.
    return status, _encoder.encode(
        {"status": "FAILED", "error": error.description or code, "code": code}
    )
