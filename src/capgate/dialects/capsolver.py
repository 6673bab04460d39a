"""CapSolver's dialect, served under /capsolver (seed 002 and docs.capsolver.com).

What sets it apart from the Anti-Captcha family: string (UUID) task ids; an `idle` status
for queued tasks (only here: other clients crash on it, CLIENTS.md rule 1); `errorId` 1
with CapSolver's string error codes; a `status` in every createTask answer, because the
`capsolver` SDK reads `r["status"]` there; image tasks answered inside createTask; results
kept 5 minutes (seed 002). The SDK also sends `Authorization: Bearer <key>`: ignored, the
key is read from `clientKey` in the body, which the SDK always sends too.

ImageToText may carry `images`, up to 9 base64 images for the `number` module
(docs.capsolver.com, ImageToTextTask): each is read as a task of its own, and the group is
answered together, `solution.text` for the first and `solution.answers` with them all.
"""

from __future__ import annotations

from typing import Any

import msgspec

from capgate.dialects import anticaptcha, ids
from capgate.dialects.anticaptcha import (
    parse_balance,
    parse_create,
    parse_result,
    parse_task_id,
    read_client_key,
    read_object,
)
from capgate.dialects.base import ReportRequest
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

__all__ = [
    "ERRORS",
    "GROUP_PARAM",
    "MAX_IMAGES",
    "REPORT_PATHS",
    "RETENTION_SECONDS",
    "SYNC_TYPES",
    "group_of",
    "grouped",
    "parse_balance",
    "parse_create",
    "parse_report",
    "parse_result",
    "parse_task",
    "parse_tasks",
    "render_balance",
    "render_created",
    "render_error",
    "render_group",
    "render_reported",
    "render_result",
    "render_solution",
]

# CapSolver's codes ("errorCode: full list of errors", docs.capsolver.com/guide/api-error);
# errorId is always 1. CapSolver has no code for an unknown method or a bad image: those
# are "invalid task data" / "bad request" there.
ERRORS: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "ERROR_INVALID_TASK_DATA",
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
    ErrorCode.REPORT_NOT_RECORDED: "ERROR_TASKID_INVALID",
    ErrorCode.IP_NOT_ALLOWED: "ERROR_KEY_DENIED_ACCESS",
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
# docs.capsolver.com/guide/api-feedback: the verdict is in the body, `result.invalid`.
REPORT_PATHS: dict[str, bool | None] = {"feedbackTask": None}

_encoder = msgspec.json.Encoder()
# Seed 002: idle (waiting), processing (being solved), ready.
_STATUS = {
    TaskStatus.QUEUED: "idle",
    TaskStatus.RUNNING: "processing",
    TaskStatus.READY: "ready",
}
# CapSolver answers success with empty error fields (docs: createTask, feedbackTask).
_NO_ERROR: dict[str, Any] = {"errorId": 0, "errorCode": "", "errorDescription": ""}
# ImageToText's `images` (docs.capsolver.com, ImageToTextTask): "up to 9 images".
MAX_IMAGES = 9
# The task of a group's first image keeps the ids of the others' tasks under this name.
GROUP_PARAM = "imageTasks"
_RECAPTCHA = (TaskType.RECAPTCHA_V2, TaskType.RECAPTCHA_V2_ENTERPRISE, TaskType.RECAPTCHA_V3)


def parse_task(task: dict[str, Any]) -> TaskSpec:
    """Translate CapSolver's task object (one image: `body`, or `images` with one)."""
    specs = parse_tasks(task)
    if len(specs) > 1:
        raise CapgateError(ErrorCode.BAD_REQUEST, "Several images make several tasks")
    return specs[0]


def parse_tasks(task: dict[str, Any]) -> list[TaskSpec]:
    """One spec per image of ImageToText's `images`; one spec for every other task.

    `module` and `websiteURL` stay in the params (CapSolver's own options; an upstream
    provider gets them), the images do not: each is its own task's image.
    """
    images = task.get("images")
    if images is None or images == "" or images == []:
        return [anticaptcha.parse_task({k: v for k, v in task.items() if k != "images"})]
    if task.get("body") not in (None, ""):
        raise CapgateError(ErrorCode.BAD_REQUEST, "Send the image as body or images, not both")
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise CapgateError(ErrorCode.BAD_REQUEST, "images must be a list of base64 images")
    if len(images) > MAX_IMAGES:
        raise CapgateError(
            ErrorCode.BAD_REQUEST, f"images holds {len(images)} images; at most {MAX_IMAGES}"
        )
    rest = {k: v for k, v in task.items() if k != "images"}
    specs = [anticaptcha.parse_task({**rest, "body": image}) for image in images]
    if specs[0].type is not TaskType.IMAGE_TO_TEXT:
        raise CapgateError(ErrorCode.BAD_REQUEST, "images is for ImageToText tasks only")
    return specs


def grouped(spec: TaskSpec, others: list[int]) -> TaskSpec:
    """The first image's spec, with the ids of the other images' tasks."""
    return TaskSpec(spec.type, {**spec.params, GROUP_PARAM: others}, spec.body)


def group_of(task: Task) -> list[int]:
    """The ids of the tasks of the other images of this task's group (none if alone)."""
    others = task.params.get(GROUP_PARAM)
    if not isinstance(others, list):
        return []
    return [i for i in others if isinstance(i, int) and not isinstance(i, bool)]


def render_group(first: Task, others: list[Task]) -> bytes:
    """A group of images as one answer: failed if any failed, ready once all are, with
    `text` (the first image's) and `answers` (every image's, in order)."""
    tasks = [first, *others]
    failed = next((t for t in tasks if t.status is TaskStatus.FAILED), None)
    if failed is not None:
        return render_failed(
            msgspec.structs.replace(failed, id=first.id, created_at=first.created_at)
        )
    if all(t.status is TaskStatus.READY for t in tasks):
        answers = [t.solution.text or "" if t.solution else "" for t in tasks]
        answer = {**_answer(first), "solution": {"text": answers[0], "answers": answers}}
        return _encoder.encode(answer)
    waiting = msgspec.structs.replace(
        first,
        status=TaskStatus.QUEUED
        if all(t.status is TaskStatus.QUEUED for t in tasks)
        else TaskStatus.RUNNING,
    )
    return _encoder.encode(_answer(waiting))


def render_solution(task: Task) -> dict[str, Any]:
    """CapSolver's solution fields per type: reCAPTCHA `gRecaptchaResponse` and hCaptcha
    `gRecaptchaResponse` (and `token`, CLIENTS.md rule 5) with `userAgent` (seed 002);
    Turnstile `token`, `type` and `userAgent` (docs: Cloudflare Turnstile); image `text`."""
    solution = task.solution
    if solution is None:
        return {}
    token = solution.token or ""
    out: dict[str, Any] = {}
    if task.type is TaskType.IMAGE_TO_TEXT:
        out["text"] = solution.text or ""
    elif task.type in _RECAPTCHA:
        out["gRecaptchaResponse"] = token
    elif task.type is TaskType.HCAPTCHA:
        out.update(gRecaptchaResponse=token, token=token)
    elif task.type is TaskType.TURNSTILE:
        out.update(token=token, type="turnstile")
    else:
        out["token"] = token
    if solution.user_agent:
        out["userAgent"] = solution.user_agent
    return out


def parse_report(body: bytes, verdict: bool | None) -> ReportRequest:
    """Read a feedbackTask request: `result.invalid` true means the answer was wrong."""
    request = read_object(body)
    client_key = read_client_key(request)
    task_id = parse_task_id(request.get("taskId"))
    if verdict is None:
        result = request.get("result")
        invalid = result.get("invalid") if isinstance(result, dict) else None
        if not isinstance(invalid, bool):
            raise CapgateError(
                ErrorCode.BAD_REQUEST, "feedbackTask needs result.invalid as true or false"
            )
        verdict = not invalid
    return ReportRequest(client_key, task_id, verdict)


def _answer(task: Task) -> dict[str, Any]:
    """A task that has not failed: its status, its solution once ready, and its id."""
    answer: dict[str, Any] = {**_NO_ERROR, "status": _STATUS.get(task.status, "processing")}
    if task.status is TaskStatus.READY:
        answer["solution"] = render_solution(task)
    answer["taskId"] = ids.to_uuid(task.id, task.created_at)
    return answer


def render_created(task: Task) -> bytes:
    """The createTask answer: the id and a status, and the solution if already read.

    The docs show only the id for token tasks, but the `capsolver` SDK reads `status`
    from every createTask answer (CLIENTS.md), so a queued task says `idle`.
    """
    if task.status is TaskStatus.FAILED:
        return render_failed(task)
    return _encoder.encode(_answer(task))


def render_result(task: Task) -> bytes:
    """The getTaskResult answer (seed 002), with the task's id as CapSolver echoes it."""
    if task.status is TaskStatus.FAILED:
        return render_failed(task)
    return _encoder.encode(_answer(task))


def render_failed(task: Task) -> bytes:
    """A failed task: errorId 1 with its code (seed 002: "errorId is greater than 0")."""
    code = task.error_code or ErrorCode.CAPTCHA_UNSOLVABLE
    return _encoder.encode(
        {
            "errorId": 1,
            "errorCode": ERRORS[code],
            "errorDescription": task.error_description or _fallback_description(code),
            "taskId": ids.to_uuid(task.id, task.created_at),
        }
    )


def _fallback_description(code: ErrorCode) -> str:
    # Clients print errorDescription; it must never be empty (CLIENTS.md rule 2).
    return f"The task failed: {code.value.lower().replace('_', ' ')}"


def render_balance(key: Key) -> bytes:
    """The getBalance answer: balance in USD and the (always empty) list of packages."""
    # docs.capsolver.com/guide/api-getbalance: {"errorId": 0, "balance": ..., "packages": []}
    return _encoder.encode(
        {"errorId": 0, "balance": float(format_money(key.balance, 6)), "packages": []}
    )


def render_reported(task: Task) -> bytes:
    """The answer to an accepted feedbackTask (docs: errorId, errorCode, ..., message)."""
    return _encoder.encode({**_NO_ERROR, "message": "ok"})


def render_error(error: CapgateError) -> bytes:
    """An error: errorId 1, CapSolver's code, a readable description."""
    return _encoder.encode(
        {
            "errorId": 1,
            "errorCode": ERRORS[error.code],
            "errorDescription": error.description or _fallback_description(error.code),
        }
    )
