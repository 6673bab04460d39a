"""AnySolver's dialect, served under /anysolver (seed 004 and anysolver.com/docs).

ULID task ids; processing / ready / failed; errorId 0 (ok), 1 (external: the request or
the captcha) or 2 (internal); error codes without the ERROR_ prefix; `cost` as a number;
`taskId`, `taskType` and `provider` in every task answer, and `solution: null` until ready.
Results are kept about 24 hours (seed 004): the server's retention, not this module's.
"""

from __future__ import annotations

from typing import Any

import msgspec

from capgate.dialects import anticaptcha, ids
from capgate.dialects.anticaptcha import parse_balance, parse_result
from capgate.dialects.base import CreateRequest, ReportRequest
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
from capgate.router import POLICY_PARAM

__all__ = [
    "ERRORS",
    "REPORT_PATHS",
    "RETENTION_SECONDS",
    "SELECTION_MODES",
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

# (errorId, errorCode). Codes from seed 004 and anysolver.com/docs/errors/error-handling,
# written without the ERROR_ prefix as seed 004 does (that table itself spells two codes
# ERROR_KEY_DOES_NOT_EXIST and ERROR_ZERO_BALANCE). Where it names no code, the nearest
# documented one; NO_SLOT is capgate's own capacity, so internal (2: "safe to retry").
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BAD_REQUEST: (1, "INVALID_TASK_DATA"),
    ErrorCode.KEY_DOES_NOT_EXIST: (1, "KEY_DOES_NOT_EXIST"),
    ErrorCode.IP_NOT_ALLOWED: (1, "IP_NOT_ALLOWED"),
    ErrorCode.ZERO_BALANCE: (1, "ZERO_BALANCE"),
    ErrorCode.TASK_ABSENT: (1, "INVALID_TASK_DATA"),
    ErrorCode.TASK_NOT_SUPPORTED: (1, "TASK_NOT_SUPPORTED"),
    ErrorCode.ZERO_CAPTCHA_FILESIZE: (1, "IMAGE_TOO_SMALL"),
    ErrorCode.TOO_BIG_CAPTCHA_FILESIZE: (1, "IMAGE_TOO_LARGE"),
    ErrorCode.REQUEST_TOO_LARGE: (1, "IMAGE_TOO_LARGE"),
    ErrorCode.IMAGE_TYPE_NOT_SUPPORTED: (1, "IMAGE_CORRUPTED"),
    ErrorCode.TASK_NOT_FOUND: (1, "TASK_NOT_FOUND"),
    ErrorCode.POLL_LIMIT_EXCEEDED: (1, "TASK_NOT_FOUND"),
    ErrorCode.NOT_REPORTABLE: (1, "INVALID_TASK_DATA"),
    ErrorCode.REPORT_NOT_RECORDED: (1, "INVALID_TASK_DATA"),
    ErrorCode.IDEMPOTENCY_CONFLICT: (1, "INVALID_TASK_DATA"),
    ErrorCode.NO_SLOT: (2, "INTERNAL_ERROR"),
    ErrorCode.CAPTCHA_UNSOLVABLE: (1, "CAPTCHA_UNSOLVABLE"),
    ErrorCode.TASK_TIMEOUT: (1, "TASK_TIMEOUT"),
    ErrorCode.NO_SUCH_METHOD: (1, "INVALID_REQUEST"),
    ErrorCode.INTERNAL: (2, "INTERNAL_ERROR"),
}

RETENTION_SECONDS: float | None = None  # Seed 004: about 24 hours, the server's default.
SYNC_TYPES: frozenset[TaskType] = frozenset()
# AnySolver documents no report/feedback endpoint (anysolver.com/docs/api-reference).
REPORT_PATHS: dict[str, bool | None] = {}

# Seed 004 shows no provider name before one is chosen; AnySolver's own word for its
# routing is "automatic" (createTask: "If omitted, automatic routing selects...").
AUTO_PROVIDER = "auto"

_encoder = msgspec.json.Encoder()
_STATUS = {
    TaskStatus.QUEUED: "processing",  # Seed 004: "Task is queued or being solved".
    TaskStatus.RUNNING: "processing",
    TaskStatus.READY: "ready",
    TaskStatus.FAILED: "failed",
}


# AnySolver's routing modes (anysolver.com/docs/getting-started/routing-strategies: set on
# the key, "override it per request") and the router policy each one is here.
SELECTION_MODES: dict[str, str] = {
    "autoCheapest": "cheapest",
    "autoFastest": "fastest",
    "autoMostReliable": "reliable",
    "priority": "priority",
}


class _Routing(msgspec.Struct):
    """The createTask fields AnySolver reads next to the task: a provider, and the
    routing mode as `selectionMode` (or nested as `settings.routing.mode`)."""

    provider: Any = None
    selectionMode: Any = None
    settings: Any = None


_routing = msgspec.json.Decoder(_Routing)


def parse_create(body: bytes) -> CreateRequest:
    """Read a createTask request; a top-level `provider` and routing mode are kept with
    the task (the task's own fields win)."""
    create = anticaptcha.parse_create(body)
    try:
        routing = _routing.decode(body)
    except (msgspec.DecodeError, RecursionError):  # parse_create has accepted the body
        routing = _Routing()
    task = create.task
    if isinstance(routing.provider, str) and routing.provider and "provider" not in task:
        task = {**task, "provider": routing.provider}
    mode = routing.selectionMode
    if mode in (None, "") and isinstance(routing.settings, dict):
        nested = routing.settings.get("routing")
        mode = nested.get("mode") if isinstance(nested, dict) else None
    if mode not in (None, "") and "selectionMode" not in task:
        task = {**task, "selectionMode": mode}
    return CreateRequest(create.client_key, task) if task is not create.task else create


def parse_task(task: dict[str, Any]) -> TaskSpec:
    """Translate AnySolver's task object; its image tasks carry the image as imageBase64,
    and a `selectionMode` becomes the router policy the task is routed by."""
    if "imageBase64" in task:
        image = task["imageBase64"]
        task = {k: v for k, v in task.items() if k != "imageBase64"}  # not kept in params
        if image not in (None, "") and task.get("body") in (None, ""):
            task["body"] = image
    spec = anticaptcha.parse_task(task)
    mode = spec.params.pop("selectionMode", None)
    if mode is not None:
        policy = SELECTION_MODES.get(mode) if isinstance(mode, str) else None
        if policy is None:
            raise CapgateError(
                ErrorCode.BAD_REQUEST,
                f"selectionMode {mode!r} is not one of {', '.join(SELECTION_MODES)}",
            )
        spec.params[POLICY_PARAM] = policy
    return spec


def parse_report(body: bytes, verdict: bool | None) -> ReportRequest:
    """Read a report request (unused while REPORT_PATHS is empty; kept for the protocol)."""
    return anticaptcha.parse_report(body, verdict)


def render_solution(task: Task) -> dict[str, Any]:
    """Seed 004: token tasks answer `token`; image tasks answer `text`."""
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


def _answer(task: Task) -> dict[str, Any]:
    """The task answer, keys in seed 004's order for each status."""
    answer: dict[str, Any] = {
        "status": _STATUS[task.status],
        "taskId": ids.to_ulid(task.id, task.created_at),
        "errorId": 0,
    }
    if task.status is TaskStatus.READY:
        answer["cost"] = float(format_money(task.cost, 6))
    elif task.status is TaskStatus.FAILED:
        code = task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE
        answer["errorId"], answer["errorCode"] = ERRORS[code]
        answer["errorDescription"] = task.error_description or _fallback_description(code)
    vendor_type = task.params.get("vendorType")
    answer["taskType"] = vendor_type if isinstance(vendor_type, str) else task.type.value
    answer["provider"] = _provider(task)
    answer["solution"] = render_solution(task) if task.status is TaskStatus.READY else None
    return answer


def _provider(task: Task) -> str:
    # The solver that took the task; before that, the provider the client asked for.
    if task.solver:
        return task.solver
    requested = task.params.get("provider")
    return requested if isinstance(requested, str) and requested else AUTO_PROVIDER


def _fallback_description(code: ErrorCode) -> str:
    # Clients print errorDescription; it must never be empty (CLIENTS.md rule 2).
    return f"The task failed: {code.value.lower().replace('_', ' ')}"


def render_created(task: Task) -> bytes:
    """The createTask answer: errorId and the task's ULID (docs: createTask)."""
    return _encoder.encode({"errorId": 0, "taskId": ids.to_ulid(task.id, task.created_at)})


def render_result(task: Task) -> bytes:
    """The getTaskResult answer (seed 004), in every status."""
    return _encoder.encode(_answer(task))


def render_balance(key: Key) -> bytes:
    """The getBalance answer: the balance in USD as a number."""
    return _encoder.encode({"errorId": 0, "balance": float(format_money(key.balance, 6))})


def render_reported(task: Task) -> bytes:
    """The answer to an accepted report (unused while REPORT_PATHS is empty)."""
    return _encoder.encode({"errorId": 0, "taskId": ids.to_ulid(task.id, task.created_at)})


def render_error(error: CapgateError) -> bytes:
    """A request-level error: errorId 1 or 2, a code without the ERROR_ prefix."""
    error_id, code = ERRORS[error.code]
    return _encoder.encode(
        {
            "errorId": error_id,
            "errorCode": code,
            "errorDescription": error.description or _fallback_description(error.code),
        }
    )
