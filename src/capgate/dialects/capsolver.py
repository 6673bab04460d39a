"""CapSolver's dialect, served under /capsolver (seed 002 and CapSolver's API docs).

What sets it apart from the Anti-Captcha family: string task ids; an `idle` status for
queued tasks (only here: other clients crash on it, CLIENTS.md rule 1); `errorId` 1 with
string error codes; a `status` in every createTask answer, which the `capsolver` SDK reads;
image tasks answered inside createTask; results kept 5 minutes and 120 polls (seed 002).
"""

from __future__ import annotations

from typing import Any

import msgspec

from capgate.dialects import ids
from capgate.dialects.anticaptcha import (
    parse_balance,
    parse_create,
    parse_result,
    parse_task,
    parse_task_id,
    read_client_key,
    read_object,
    render_solution,
)
from capgate.dialects.base import ReportRequest
from capgate.model import CapgateError, ErrorCode, Key, Task, TaskStatus, TaskType

__all__ = [
    "ERRORS",
    "REPORT_PATHS",
    "RETENTION_SECONDS",
    "SYNC_TYPES",
    "parse_balance",
    "parse_create",
    "parse_report",
    "parse_result",
    "parse_task",
    "render_balance",
    "render_created",
    "render_error",
    "render_reported",
    "render_result",
]

# CapSolver's error codes (docs: "errorCode: full list of errors"); errorId is always 1.
ERRORS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "ERROR_BAD_REQUEST",
    ErrorCode.KEY_DOES_NOT_EXIST: "ERROR_KEY_DENIED_ACCESS",
    ErrorCode.ZERO_BALANCE: "ERROR_ZERO_BALANCE",
    ErrorCode.TASK_ABSENT: "ERROR_INVALID_TASK_DATA",
    ErrorCode.TASK_NOT_SUPPORTED: "ERROR_TASK_NOT_SUPPORTED",
    ErrorCode.ZERO_CAPTCHA_FILESIZE: "ERROR_INVALID_TASK_DATA",
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: "ERROR_INVALID_TASK_DATA",
    ErrorCode.REQUEST_TOO_LARGE: "ERROR_BAD_REQUEST",
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: "ERROR_INVALID_TASK_DATA",
    ErrorCode.TASK_NOT_FOUND: "ERROR_TASKID_INVALID",
    # Seed 002: past 120 queries "the task results will be lost".
    ErrorCode.POLL_LIMIT_EXCEEDED: "ERROR_TASKID_INVALID",
    ErrorCode.NOT_REPORTABLE: "ERROR_TASKID_INVALID",
    ErrorCode.IDEMPOTENCY_CONFLICT: "ERROR_INVALID_TASK_DATA",
    ErrorCode.NO_SLOT: "ERROR_RATE_LIMIT",
    ErrorCode.CAPTCHA_UNSOLVABLE: "ERROR_CAPTCHA_UNSOLVABLE",
    ErrorCode.TASK_TIMEOUT: "ERROR_TASK_TIMEOUT",
    ErrorCode.NO_SUCH_METHOD: "ERROR_BAD_REQUEST",
    ErrorCode.INTERNAL: "ERROR_SERVICE_UNAVALIABLE",  # sic: the vendor's spelling
}

# Seed 002: "Each task can be queried within 5 minutes after it is created".
RETENTION_SECONDS: float | None = 300.0
# Seed 002: recognition tasks such as ImageToText are answered by createTask itself.
SYNC_TYPES: frozenset[TaskType] = frozenset({TaskType.IMAGE_TO_TEXT})
# feedbackTask carries its verdict in the body: {"result": {"invalid": true}} = wrong answer.
REPORT_PATHS: dict[str, bool | None] = {"feedbackTask": None}

_encoder = msgspec.json.Encoder()
_STATUS = {TaskStatus.QUEUED: "idle", TaskStatus.RUNNING: "processing", TaskStatus.READY: "ready"}


def parse_report(body: bytes, verdict: bool | None) -> ReportRequest:
    """Read a feedbackTask request: `result.invalid` true means the answer was wrong."""
    request = read_object(body)
    client_key = read_client_key(request)
    task_id = parse_task_id(request.get("taskId"))
    result = request.get("result")
    invalid = isinstance(result, dict) and result.get("invalid") is True
    return ReportRequest(client_key, task_id, not invalid if verdict is None else verdict)


def _task_answer(task: Task) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "errorId": 0,
        "errorCode": "",
        "errorDescription": "",
        "taskId": ids.to_uuid(task.id, task.created_at),
        "status": _STATUS.get(task.status, "processing"),
    }
    if task.status is TaskStatus.READY:
        answer["solution"] = render_solution(task)
    return answer


def render_created(task: Task) -> bytes:
    """The createTask answer: the id and a status; the solution too if already read."""
    if task.status is TaskStatus.FAILED:
        return render_failed(task)
    return _encoder.encode(_task_answer(task))


def render_result(task: Task) -> bytes:
    """The getTaskResult answer (seed 002)."""
    if task.status is TaskStatus.FAILED:
        return render_failed(task)
    return _encoder.encode(_task_answer(task))


def render_failed(task: Task) -> bytes:
    """A failed task: errorId 1 with its code, and the id it belongs to."""
    code = task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE
    return _encoder.encode(
        {
            "errorId": 1,
            "errorCode": ERRORS[code],
            "errorDescription": task.error_description or "",
            "taskId": ids.to_uuid(task.id, task.created_at),
        }
    )


def render_balance(key: Key) -> bytes:
    """The getBalance answer: balance and the (always empty) list of packages."""
    balance = key.balance / 1_000_000
    return _encoder.encode({"errorId": 0, "balance": balance, "packages": []})


def render_reported(task: Task) -> bytes:
    """The answer to an accepted feedbackTask."""
    return _encoder.encode({"errorId": 0, "errorCode": "", "errorDescription": "", "message": "ok"})


def render_error(error: CapgateError) -> bytes:
    """An error: errorId 1, CapSolver's code, a readable description."""
    return _encoder.encode(
        {"errorId": 1, "errorCode": ERRORS[error.code], "errorDescription": error.description}
    )
