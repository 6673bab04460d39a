"""Vast's dialect (VastCap), served under /api/solver (seed 003 and docs.vast.sh).

UUID task ids; processing / ready / failed, with a failure's details in a nested `error`
object. The seed's failure example says `"status": "error"` while its own status list says
`failed`: capgate answers `failed`, the documented status word, and answers it in every
error (a wrong key, an unknown id, bad input too), since the seed tells clients to poll
"until the status is either ready or failed". Every answer also carries a top-level
`errorId` (CLIENTS.md rule 2: failure is `errorId > 0` with `errorCode` and
`errorDescription` at the top), so a failure has both the top-level error fields and the
nested object Vast's clients read.
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
from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Task,
    TaskStatus,
    TaskType,
    format_money,
)

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

# Vast's codes where its docs name them (seed 003; docs.vast.sh authentication and
# getBalance pages: ERROR_KEY_DOES_NOT_EXIST, ERROR_INSUFFICIENT_BALANCE,
# ERROR_TASK_NOT_FOUND, ERROR_CAPTCHA_UNSOLVABLE); the Anti-Captcha family's elsewhere,
# the API Vast's createTask / getTaskResult is modelled on. errorId is always 1.
ERRORS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "ERROR_BAD_PARAMETERS",
    ErrorCode.KEY_DOES_NOT_EXIST: "ERROR_KEY_DOES_NOT_EXIST",
    ErrorCode.ZERO_BALANCE: "ERROR_INSUFFICIENT_BALANCE",
    ErrorCode.TASK_ABSENT: "ERROR_TASK_ABSENT",
    ErrorCode.TASK_NOT_SUPPORTED: "ERROR_TASK_NOT_SUPPORTED",
    ErrorCode.ZERO_CAPTCHA_FILESIZE: "ERROR_ZERO_CAPTCHA_FILESIZE",
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: "ERROR_TOO_BIG_CAPTCHA_FILESIZE",
    ErrorCode.REQUEST_TOO_LARGE: "ERROR_TOO_BIG_CAPTCHA_FILESIZE",
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: "ERROR_IMAGE_TYPE_NOT_SUPPORTED",
    ErrorCode.TASK_NOT_FOUND: "ERROR_TASK_NOT_FOUND",
    ErrorCode.POLL_LIMIT_EXCEEDED: "ERROR_TASK_NOT_FOUND",
    ErrorCode.NOT_REPORTABLE: "ERROR_TASK_NOT_FOUND",
    ErrorCode.REPORT_NOT_RECORDED: "ERROR_TASK_NOT_FOUND",
    ErrorCode.IP_NOT_ALLOWED: "ERROR_IP_NOT_ALLOWED",
    ErrorCode.IDEMPOTENCY_CONFLICT: "ERROR_BAD_PARAMETERS",
    ErrorCode.NO_SLOT: "ERROR_NO_SLOT_AVAILABLE",
    ErrorCode.CAPTCHA_UNSOLVABLE: "ERROR_CAPTCHA_UNSOLVABLE",
    # Vast names no timeout code: a deadline miss is "could not be solved", as in the
    # Anti-Captcha family, with a description that says it timed out.
    ErrorCode.TASK_TIMEOUT: "ERROR_CAPTCHA_UNSOLVABLE",
    ErrorCode.NO_SUCH_METHOD: "ERROR_NO_SUCH_METHOD",
    ErrorCode.INTERNAL: "ERROR_NO_SLOT_AVAILABLE",
}

RETENTION_SECONDS: float | None = None  # Vast documents none: the server's default.
SYNC_TYPES: frozenset[TaskType] = frozenset()
# Vast documents no report endpoint; these are capgate's (Anti-Captcha's 2Captcha-style
# names), answered like the root's, for clients that want their refund.
REPORT_PATHS: dict[str, bool | None] = {"reportIncorrect": False, "reportCorrect": True}

_encoder = msgspec.json.Encoder()
_RECAPTCHA = (TaskType.RECAPTCHA_V2, TaskType.RECAPTCHA_V2_ENTERPRISE, TaskType.RECAPTCHA_V3)


def render_solution(task: Task) -> dict[str, Any]:
    """Seed 003's solution fields: reCAPTCHA gRecaptchaResponse (+ v3 score), else token."""
    solution = task.solution
    if solution is None:
        return {}
    out: dict[str, Any] = {}
    if task.type is TaskType.IMAGE_TO_TEXT:
        out["text"] = solution.text or ""
    elif task.type in _RECAPTCHA:
        out["gRecaptchaResponse"] = solution.token or ""
        if task.type is TaskType.RECAPTCHA_V3 and solution.score is not None:
            out["score"] = solution.score
    else:
        # hCaptcha and Turnstile: `token` only, as seed 003's hCaptcha example shows.
        out["token"] = solution.token or ""
    # Seed 003: userAgent is "present if a custom User-Agent was used": the client's own.
    if solution.user_agent and task.params.get("userAgent"):
        out["userAgent"] = solution.user_agent
    return out


def _error_fields(code: ErrorCode, description: str) -> dict[str, Any]:
    # Clients print errorDescription; it must never be empty (CLIENTS.md rule 2).
    text = description or f"The request failed: {code.value.lower().replace('_', ' ')}"
    return {"errorId": 1, "errorCode": ERRORS[code], "errorDescription": text}


def render_created(task: Task) -> bytes:
    """The createTask answer: errorId and the task's UUID."""
    return _encoder.encode({"errorId": 0, "taskId": ids.to_uuid(task.id, task.created_at)})


def render_result(task: Task) -> bytes:
    """The getTaskResult answer (seed 003), with the top-level errorId clients need."""
    if task.status is TaskStatus.READY:
        return _encoder.encode({"errorId": 0, "status": "ready", "solution": render_solution(task)})
    if task.status is TaskStatus.FAILED:
        error = _error_fields(
            task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE, task.error_description or ""
        )
        return _encoder.encode({**error, "status": "failed", "error": error})
    return b'{"errorId":0,"status":"processing"}'


def render_balance(key: Key) -> bytes:
    """The getBalance answer: docs.vast.sh shows {"balance": 10.25}; errorId 0 is added."""
    return _encoder.encode({"errorId": 0, "balance": float(format_money(key.balance, 6))})


def render_reported(task: Task) -> bytes:
    """The answer to an accepted report."""
    return b'{"errorId":0,"status":"success"}'


def render_error(error: CapgateError) -> bytes:
    """A request-level error: the status word that ends a polling loop, the top-level
    fields and the same in a nested `error`."""
    fields = _error_fields(error.code, error.description)
    return _encoder.encode({**fields, "status": "failed", "error": fields})
