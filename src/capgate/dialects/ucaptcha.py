"""uCaptcha's REST dialect: POST /task/submit and GET /task/result/:id (seed 000).

The key comes in the `x-api-key` header (recommended) or `?token=`. Unlike the JSON family,
this dialect uses real HTTP status codes, as its vendor documents. Task ids are UUIDs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec

from capgate.dialects import ids
from capgate.dialects.anticaptcha import parse_task, read_object
from capgate.model import CapgateError, ErrorCode, Task, TaskSpec, TaskStatus, TaskType

# (HTTP status, error text) for each internal error.
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (400, "bad_request"),
    ErrorCode.KEY_DOES_NOT_EXIST: (401, "invalid_api_key"),
    ErrorCode.ZERO_BALANCE: (402, "insufficient_balance"),
    ErrorCode.TASK_ABSENT: (400, "bad_request"),
    ErrorCode.TASK_NOT_SUPPORTED: (400, "task_not_supported"),
    ErrorCode.ZERO_CAPTCHA_FILESIZE: (400, "invalid_image"),
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: (413, "image_too_large"),
    ErrorCode.REQUEST_TOO_LARGE: (413, "request_too_large"),
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: (400, "invalid_image"),
    ErrorCode.TASK_NOT_FOUND: (404, "not_found"),
    ErrorCode.POLL_LIMIT_EXCEEDED: (429, "too_many_requests"),
    ErrorCode.NOT_REPORTABLE: (409, "not_reportable"),
    ErrorCode.CAPTCHA_UNSOLVABLE: (422, "captcha_unsolvable"),
    ErrorCode.TASK_TIMEOUT: (422, "task_timeout"),
    ErrorCode.NO_SUCH_METHOD: (405, "method_not_allowed"),
    ErrorCode.INTERNAL: (503, "temporarily_unavailable"),
}

# Short type names a REST client may use, besides every vendor name tasknames.py knows.
_SHORT_TYPES: dict[str, str] = {
    "image": "ImageToTextTask",
    "imagetotext": "ImageToTextTask",
    "recaptcha": "RecaptchaV2TaskProxyless",
    "recaptcha_v2": "RecaptchaV2TaskProxyless",
    "recaptchav2": "RecaptchaV2TaskProxyless",
    "recaptcha_v3": "RecaptchaV3TaskProxyless",
    "recaptchav3": "RecaptchaV3TaskProxyless",
    "hcaptcha": "HCaptchaTaskProxyless",
    "turnstile": "TurnstileTaskProxyless",
}
# Field names a REST client may use for the same things.
_FIELD_ALIASES = {
    "sitekey": "websiteKey",
    "siteKey": "websiteKey",
    "site_key": "websiteKey",
    "url": "websiteURL",
    "pageurl": "websiteURL",
    "pageURL": "websiteURL",
    "websiteUrl": "websiteURL",
    "image": "body",
}
_STATUS = {
    TaskStatus.QUEUED: "QUEUED",
    TaskStatus.RUNNING: "RUNNING",
    TaskStatus.READY: "SUCCESS",
    TaskStatus.FAILED: "FAILED",
}

_encoder = msgspec.json.Encoder()


def client_key(headers: list[tuple[bytes, bytes]], query: bytes) -> str:
    """The key from the `x-api-key` header, else from `?token=`."""
    for header, value in headers:
        if header == b"x-api-key" and value:
            return value.decode("latin-1")
    for param, text in parse_qsl(query.decode("latin-1")):
        if param == "token" and text:
            return text
    raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "Send the API key as x-api-key or ?token=")


def parse_submit(body: bytes) -> TaskSpec:
    """The submit body: a task object, at the top level or under `task`."""
    request = read_object(body)
    raw = request.get("task", request)
    if not isinstance(raw, dict):
        raise CapgateError(ErrorCode.BAD_REQUEST, "task must be a JSON object")
    task: dict[str, Any] = {_FIELD_ALIASES.get(str(k), str(k)): v for k, v in raw.items()}
    type_name = task.get("type")
    if isinstance(type_name, str):
        task["type"] = _SHORT_TYPES.get(type_name.lower(), type_name)
    return parse_task(task)


def parse_task_id(path_tail: str) -> int:
    """The task id in the path; a malformed one is simply not found."""
    task_id = ids.parse_id(path_tail)
    if task_id is None:
        raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"Task {path_tail!r} does not exist")
    return task_id


def render_submitted(task: Task) -> tuple[int, bytes]:
    """The submit answer: the `task_id` to poll, and the task's status."""
    return 200, _encoder.encode(
        {"task_id": ids.to_uuid(task.id, task.created_at), "status": _STATUS[task.status]}
    )


def render_result(task: Task) -> tuple[int, bytes]:
    """The result answer, exactly per seed 000."""
    if task.status is TaskStatus.READY:
        solution = task.solution
        if task.type is TaskType.IMAGE_TO_TEXT:
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
    return status, _encoder.encode({"error": error.description, "code": code})
