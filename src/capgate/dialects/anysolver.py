"""AnySolver's dialect, served under /anysolver (seed 004).

ULID task ids; processing / ready / failed; errorId 0 (ok), 1 (external: the request or
the captcha) or 2 (internal); error codes without the ERROR_ prefix; `cost` as a number;
`taskId`, `taskType` and `provider` in every task answer, and `solution: null` until ready.
"""

from __future__ import annotations

from typing import Any

import msgspec

from capgate.dialects import ids
from capgate.dialects.anticaptcha import (
    parse_balance,
    parse_create,
    parse_report,
    parse_result,
    parse_task,
)
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
    "render_solution",
]

# (errorId, errorCode): 1 for external errors, 2 for internal ones (seed 004).
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (1, "INVALID_REQUEST"),
    ErrorCode.KEY_DOES_NOT_EXIST: (1, "INVALID_API_KEY"),
    ErrorCode.ZERO_BALANCE: (1, "INSUFFICIENT_BALANCE"),
    ErrorCode.TASK_ABSENT: (1, "INVALID_REQUEST"),
    ErrorCode.TASK_NOT_SUPPORTED: (1, "TASK_NOT_SUPPORTED"),
    ErrorCode.ZERO_CAPTCHA_FILESIZE: (1, "INVALID_IMAGE"),
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: (1, "IMAGE_TOO_LARGE"),
    ErrorCode.REQUEST_TOO_LARGE: (1, "REQUEST_TOO_LARGE"),
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: (1, "INVALID_IMAGE"),
    ErrorCode.TASK_NOT_FOUND: (1, "TASK_NOT_FOUND"),
    ErrorCode.POLL_LIMIT_EXCEEDED: (1, "TOO_MANY_REQUESTS"),
    ErrorCode.NOT_REPORTABLE: (1, "TASK_NOT_READY"),
    ErrorCode.IDEMPOTENCY_CONFLICT: (1, "IDEMPOTENCY_CONFLICT"),
    ErrorCode.NO_SLOT: (1, "RATE_LIMITED"),
    ErrorCode.CAPTCHA_UNSOLVABLE: (1, "CAPTCHA_UNSOLVABLE"),
    ErrorCode.TASK_TIMEOUT: (1, "TASK_TIMEOUT"),
    ErrorCode.NO_SUCH_METHOD: (1, "INVALID_REQUEST"),
    ErrorCode.INTERNAL: (2, "INTERNAL_ERROR"),
}

RETENTION_SECONDS: float | None = None  # Seed 004: about 24 hours, the server's default.
SYNC_TYPES: frozenset[TaskType] = frozenset()
REPORT_PATHS: dict[str, bool | None] = {"reportIncorrect": False, "reportCorrect": True}

_encoder = msgspec.json.Encoder()
_STATUS = {
    TaskStatus.QUEUED: "processing",
    TaskStatus.RUNNING: "processing",
    TaskStatus.READY: "ready",
    TaskStatus.FAILED: "failed",
}


def render_solution(task: Task) -> dict[str, Any]:
    """Seed 004: image tasks answer `text`; every token task answers `token`."""
    solution = task.solution
    if solution is None:
        return {}
    out: dict[str, Any] = (
        {"text": solution.text or ""}
        if task.type is TaskType.IMAGE_TO_TEXT
        else {"token": solution.token or ""}
    )
    if solution.user_agent:
        out["userAgent"] = solution.user_agent
    return out


def _task_answer(task: Task) -> dict[str, Any]:
    vendor_type = task.params.get("vendorType")
    requested = task.params.get("provider")
    answer: dict[str, Any] = {
        "status": _STATUS[task.status],
        "taskId": ids.to_ulid(task.id, task.created_at),
        "errorId": 0,
        "taskType": vendor_type if isinstance(vendor_type, str) else task.type.value,
        # The solver that answered; before that, the one the client asked for, if any.
        "provider": task.solver or (requested if isinstance(requested, str) else "auto"),
        "solution": None,
    }
    if task.status is TaskStatus.READY:
        answer["solution"] = render_solution(task)
        answer["cost"] = task.cost / 1_000_000
    elif task.status is TaskStatus.FAILED:
        error_id, code = ERRORS[task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE]
        answer["errorId"] = error_id
        answer["errorCode"] = code
        answer["errorDescription"] = task.error_description or ""
    return answer


def render_created(task: Task) -> bytes:
    """The createTask answer: the task as it stands, with its ULID."""
    return _encoder.encode(_task_answer(task))


def render_result(task: Task) -> bytes:
    """The getTaskResult answer (seed 004)."""
    return _encoder.encode(_task_answer(task))


def render_balance(key: Key) -> bytes:
    """The getBalance answer."""
    return _encoder.encode({"errorId": 0, "balance": key.balance / 1_000_000})


def render_reported(task: Task) -> bytes:
    """The answer to an accepted report."""
    return _encoder.encode({"errorId": 0, "taskId": ids.to_ulid(task.id, task.created_at)})


def render_error(error: CapgateError) -> bytes:
    """A request-level error: errorId 1 or 2, a code without the ERROR_ prefix."""
    error_id, code = ERRORS[error.code]
    return _encoder.encode(
        {"errorId": error_id, "errorCode": code, "errorDescription": error.description}
    )
