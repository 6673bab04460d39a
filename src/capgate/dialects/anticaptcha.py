"""The Anti-Captcha family (Anti-Captcha, 2Captcha API v2, CapMonster Cloud), served at the root.

Shapes follow seed 001 and CLIENTS.md: integer task ids, `processing` / `ready`, numeric
errorId with ERROR_* codes on HTTP 200, and closed key sets, because several SDKs build
their response objects with `Model(**json)` and crash on an extra key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from capgate.dialects import ids
from capgate.dialects.base import CreateRequest, ReportRequest
from capgate.dialects.tasknames import task_type_for
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

# errorId and errorCode of each internal error, from the vendors' published error tables.
# Never 11 (ERROR_IP_NOT_ALLOWED): one client family then calls an outside IP-lookup service.
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.KEY_DOES_NOT_EXIST: (1, "ERROR_KEY_DOES_NOT_EXIST"),
    ErrorCode.INTERNAL: (2, "ERROR_NO_SLOT_AVAILABLE"),
    ErrorCode.ZERO_CAPTCHA_FILESIZE: (3, "ERROR_ZERO_CAPTCHA_FILESIZE"),
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: (4, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
    ErrorCode.REQUEST_TOO_LARGE: (4, "ERROR_TOO_BIG_CAPTCHA_FILESIZE"),
    ErrorCode.ZERO_BALANCE: (10, "ERROR_ZERO_BALANCE"),
    ErrorCode.CAPTCHA_UNSOLVABLE: (12, "ERROR_CAPTCHA_UNSOLVABLE"),
    # The family has no timeout code for image tasks: a deadline miss is "unsolvable",
    # with a description that says it timed out.
    ErrorCode.TASK_TIMEOUT: (12, "ERROR_CAPTCHA_UNSOLVABLE"),
    ErrorCode.NO_SUCH_METHOD: (14, "ERROR_NO_SUCH_METHOD"),
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: (15, "ERROR_IMAGE_TYPE_NOT_SUPPORTED"),
    ErrorCode.TASK_NOT_FOUND: (16, "ERROR_NO_SUCH_CAPCHA_ID"),
    ErrorCode.POLL_LIMIT_EXCEEDED: (16, "ERROR_NO_SUCH_CAPCHA_ID"),
    ErrorCode.NOT_REPORTABLE: (16, "ERROR_NO_SUCH_CAPCHA_ID"),
    # Anti-Captcha's answer to a report past its window or its confirmation ratio.
    ErrorCode.REPORT_NOT_RECORDED: (16, "ERROR_NO_SUCH_CAPCHA_ID"),
    ErrorCode.IDEMPOTENCY_CONFLICT: (110, "ERROR_BAD_PARAMETERS"),
    ErrorCode.NO_SLOT: (2, "ERROR_NO_SLOT_AVAILABLE"),
    ErrorCode.TASK_ABSENT: (22, "ERROR_TASK_ABSENT"),
    ErrorCode.TASK_NOT_SUPPORTED: (23, "ERROR_TASK_NOT_SUPPORTED"),
    ErrorCode.BAD_REQUEST: (110, "ERROR_BAD_PARAMETERS"),
}


# Every task is answered asynchronously: createTask returns only the id.
RETENTION_SECONDS: float | None = None  # The server's setting (24 h by default, seed 001).
SYNC_TYPES: frozenset[TaskType] = frozenset()

# Anti-Captcha's report methods, and 2Captcha API v2's shorter names.
REPORT_PATHS: dict[str, bool | None] = {
    "reportIncorrectImageCaptcha": False,
    "reportIncorrectRecaptcha": False,
    "reportIncorrectHcaptcha": False,
    "reportCorrectRecaptcha": True,
    "reportIncorrect": False,
    "reportCorrect": True,
}

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def read_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or BAD_REQUEST."""
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise CapgateError(
            ErrorCode.BAD_REQUEST, f"The request body is not valid JSON: {exc}"
        ) from None
    except RecursionError:
        raise CapgateError(ErrorCode.BAD_REQUEST, "The request body nests too deep") from None
    if not isinstance(value, dict):
        raise CapgateError(ErrorCode.BAD_REQUEST, "The request body must be a JSON object")
    return value


def read_client_key(request: dict[str, Any]) -> str:
    """The clientKey field, or KEY_DOES_NOT_EXIST."""
    key = request.get("clientKey")
    if not isinstance(key, str) or not key:
        raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "clientKey is missing or not a string")
    return key


def parse_create(body: bytes) -> CreateRequest:
    """Read a createTask request: the key and the raw task object."""
    request = read_object(body)
    client_key = read_client_key(request)
    task = request.get("task")
    if task is None or task == "" or task == {}:
        raise CapgateError(ErrorCode.TASK_ABSENT, "The task property is empty or missing")
    if not isinstance(task, dict):
        raise CapgateError(ErrorCode.BAD_REQUEST, "The task property must be a JSON object")
    # Some clients put languagePool next to the task instead of inside it; callbackUrl
    # belongs next to it ("" means none, CLIENTS.md rule 7).
    for name in ("languagePool", "callbackUrl"):
        if request.get(name) not in (None, "") and name not in task:
            task = {**task, name: request[name]}
    return CreateRequest(client_key, task)


def parse_task(task: dict[str, Any]) -> TaskSpec:
    """Translate the vendor's task object into a task spec."""
    type_name = task.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise CapgateError(ErrorCode.TASK_NOT_SUPPORTED, "The task has no type")
    task_type = task_type_for(type_name)
    if task_type is None:
        raise CapgateError(
            ErrorCode.TASK_NOT_SUPPORTED, f"Task type {type_name!r} is not supported"
        )
    # Junk is tolerated: null and "" mean "not given" for every optional field.
    params = {
        k: v for k, v in task.items() if k not in ("type", "body") and v is not None and v != ""
    }
    params["vendorType"] = type_name
    if task_type is TaskType.IMAGE_TO_TEXT:
        return TaskSpec(task_type, params, decode_image(task.get("body")))
    for field in ("websiteURL", "websiteKey"):
        if not isinstance(params.get(field), str):
            raise CapgateError(ErrorCode.BAD_REQUEST, f"The task needs {field} as a string")
    return TaskSpec(task_type, params)


def decode_image(value: Any) -> bytes:
    """Decode a base64 image body (a data: URI prefix is allowed)."""
    if value is None or value == "":
        raise CapgateError(ErrorCode.ZERO_CAPTCHA_FILESIZE, "The task has no image body")
    if not isinstance(value, str):
        raise CapgateError(ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, "body must be a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            # Tolerate whitespace and line breaks that some encoders insert.
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise CapgateError(
                ErrorCode.IMAGE_TYPE_NOT_SUPPORTED, "body is not valid base64"
            ) from None


def parse_result(body: bytes) -> tuple[str, int]:
    """Read a getTaskResult request: the key and the task id (an int, or a numeric string)."""
    request = read_object(body)
    client_key = read_client_key(request)
    return client_key, parse_task_id(request.get("taskId"))


def parse_task_id(value: Any) -> int:
    """A task id given as an integer or a string of digits (or another dialect's form)."""
    task_id = ids.parse_id(value)
    if task_id is None:
        raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"taskId {value!r} is not a task id")
    return task_id


def parse_balance(body: bytes) -> str:
    """Read a getBalance request: the key."""
    return read_client_key(read_object(body))


def parse_report(body: bytes, verdict: bool | None) -> ReportRequest:
    """Read a report request: the key and the task id; the path carries the verdict."""
    request = read_object(body)
    client_key = read_client_key(request)
    task_id = parse_task_id(request.get("taskId"))
    return ReportRequest(client_key, task_id, bool(verdict))


def render_created(task: Task) -> bytes:
    """The createTask answer: errorId and taskId, nothing else."""
    return _encoder.encode({"errorId": 0, "taskId": task.id})


def render_result(task: Task) -> bytes:
    """The getTaskResult answer for a task the caller owns."""
    if task.status is TaskStatus.FAILED:
        code = task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE
        return render_error(CapgateError(code, task.error_description or ""))
    if task.status is not TaskStatus.READY:
        return b'{"errorId":0,"status":"processing"}'
    return _encoder.encode(
        {
            "errorId": 0,
            "status": "ready",
            "solution": render_solution(task),
            "cost": format_money(task.cost),
            "ip": task.ip,
            "createTime": int(task.created_at),
            "endTime": int(task.finished_at or task.created_at),
            "solveCount": task.attempts,
        }
    )


def render_solution(task: Task) -> dict[str, Any]:
    """The solution object in the fields each task type's clients read."""
    solution = task.solution
    if solution is None:
        return {}
    out: dict[str, Any] = {}
    if task.type is TaskType.IMAGE_TO_TEXT:
        out["text"] = solution.text or ""
    elif task.type is TaskType.HCAPTCHA:
        out["gRecaptchaResponse"] = solution.token or ""
        out["token"] = solution.token or ""
    elif task.type is TaskType.TURNSTILE:
        out["token"] = solution.token or ""
    elif task.type in (
        TaskType.RECAPTCHA_V2,
        TaskType.RECAPTCHA_V2_ENTERPRISE,
        TaskType.RECAPTCHA_V3,
    ):
        out["gRecaptchaResponse"] = solution.token or ""
    else:
        out["token"] = solution.token or ""
    if solution.user_agent:
        out["userAgent"] = solution.user_agent
    return out


def render_reported(task: Task) -> bytes:
    """The answer to an accepted report."""
    return b'{"errorId":0,"status":"success"}'


def render_balance(key: Key) -> bytes:
    """The getBalance answer."""
    return _encoder.encode({"errorId": 0, "balance": float(format_money(key.balance, 6))})


def render_error(error: CapgateError) -> bytes:
    """An error in the family's shape: errorId, errorCode, errorDescription."""
    error_id, code = ERRORS[error.code]
    return _encoder.encode(
        {"errorId": error_id, "errorCode": code, "errorDescription": error.description}
    )
