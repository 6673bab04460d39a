"""The Anti-Captcha family (Anti-Captcha, 2Captcha API v2, CapMonster Cloud), served at the root.

Shapes follow seed 001 and CLIENTS.md: integer task ids, `processing` / `ready`, numeric
errorId with ERROR_* codes on HTTP 200, and closed key sets, because several SDKs build
their response objects with `Model(**json)` and crash on an extra key. Besides the task
methods: the vendors' report methods, and Anti-Captcha's account statistics
(getQueueStats, getSpendingStats: `StatsDialect`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

import msgspec

from capgate.dialects import ids
from capgate.dialects.base import CreateRequest, ReportRequest, SpendingQuery
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

if TYPE_CHECKING:
    from capgate.service import QueueStats, SpendingRecord

# errorId and errorCode of each internal error, from the vendors' published error tables.
# Never 11 (ERROR_IP_NOT_ALLOWED): one client family then calls an outside IP-lookup service.
ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.KEY_DOES_NOT_EXIST: (1, "ERROR_KEY_DOES_NOT_EXIST"),
    # The vendors' "refused from your IP" that is not 11 (see above).
    ErrorCode.IP_NOT_ALLOWED: (21, "ERROR_IP_BLOCKED"),
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

# Anti-Captcha's report methods, CapMonster Cloud's token one (docs.capmonster.cloud,
# "bad tokens": reportIncorrectTokenCaptcha, with reportIncorrectRecaptcha and
# reportIncorrectHcaptcha as its aliases), and 2Captcha API v2's shorter names.
REPORT_PATHS: dict[str, bool | None] = {
    "reportIncorrectImageCaptcha": False,
    "reportIncorrectRecaptcha": False,
    "reportIncorrectHcaptcha": False,
    "reportIncorrectTokenCaptcha": False,
    "reportCorrectRecaptcha": True,
    "reportIncorrect": False,
    "reportCorrect": True,
}

# getQueueStats' queues (anti-captcha.com/apidoc/methods/getQueueStats) and the task type
# each is for; None: a queue of a kind capgate has no task type for (AntiGate templates,
# image coordinates). Proxy and language variants share capgate's one type.
QUEUES: dict[int, TaskType | None] = {
    1: TaskType.IMAGE_TO_TEXT,  # ImageToText, English
    2: TaskType.IMAGE_TO_TEXT,  # ImageToText, Russian
    5: TaskType.RECAPTCHA_V2,  # with proxy
    6: TaskType.RECAPTCHA_V2,  # without proxy
    7: TaskType.FUNCAPTCHA,
    10: TaskType.FUNCAPTCHA,
    12: TaskType.GEETEST,
    13: TaskType.GEETEST,
    18: TaskType.RECAPTCHA_V3,  # s0.3
    19: TaskType.RECAPTCHA_V3,  # s0.7
    20: TaskType.RECAPTCHA_V3,  # s0.9
    21: TaskType.HCAPTCHA,
    22: TaskType.HCAPTCHA,
    23: TaskType.RECAPTCHA_V2_ENTERPRISE,
    24: TaskType.RECAPTCHA_V2_ENTERPRISE,
    25: None,  # AntiGateTask
    26: TaskType.TURNSTILE,
    27: TaskType.TURNSTILE,
    28: None,  # Image Coordinates
    29: TaskType.HCAPTCHA,  # hCaptcha Enterprise
}

# getSpendingStats' `queue` is a name from Anti-Captcha's statistics ("English
# ImageToText", "Recaptcha Proxyless"): matched by the words in it, in this order, after
# lower-casing and dropping spaces, '-' and '_'. A task type name (ImageToTextTask) works too.
_QUEUE_WORDS: tuple[tuple[str, TaskType], ...] = (
    ("recaptchaenterprise", TaskType.RECAPTCHA_V2_ENTERPRISE),
    ("enterpriserecaptcha", TaskType.RECAPTCHA_V2_ENTERPRISE),
    ("recaptchav3", TaskType.RECAPTCHA_V3),
    ("recaptcha", TaskType.RECAPTCHA_V2),
    ("nocaptcha", TaskType.RECAPTCHA_V2),
    ("hcaptcha", TaskType.HCAPTCHA),
    ("funcaptcha", TaskType.FUNCAPTCHA),
    ("geetest", TaskType.GEETEST),
    ("turnstile", TaskType.TURNSTILE),
    ("imagetotext", TaskType.IMAGE_TO_TEXT),
    ("image", TaskType.IMAGE_TO_TEXT),
)
_SEPARATORS = re.compile(r"[\s_-]+")
# Fields a client sends next to the task that belong with it: Anti-Captcha and 2Captcha
# put softId and languagePool at the top, CapSolver its appId; callbackUrl goes there too.
_TOP_LEVEL_TASK_FIELDS = ("languagePool", "callbackUrl", "softId", "appId")

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
    # belongs next to it ("" means none, CLIENTS.md rule 7); softId and appId name the
    # client's application, kept with the task for getSpendingStats' softId filter.
    for name in _TOP_LEVEL_TASK_FIELDS:
        value = request.get(name)
        if value in (None, "") or name in task or isinstance(value, dict | list):
            continue  # Junk in a field capgate only files away is ignored, not refused.
        task = {**task, name: value}
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
    """The solution object with every field the family's docs show for the task type:
    reCAPTCHA `gRecaptchaResponse` (Anti-Captcha, CapMonster) and `token` (2Captcha);
    hCaptcha `gRecaptchaResponse`, `token` and `respKey` (all three vendors; empty when the
    solver gave none); Turnstile `token`; `userAgent` whenever the solver used a known one
    (2Captcha's Turnstile, every vendor's hCaptcha; some clients require it)."""
    solution = task.solution
    if solution is None:
        return {}
    token = solution.token or ""
    out: dict[str, Any] = {}
    if task.type is TaskType.IMAGE_TO_TEXT:
        out["text"] = solution.text or ""
    elif task.type is TaskType.HCAPTCHA:
        out.update(gRecaptchaResponse=token, token=token, respKey="")
    elif task.type in (
        TaskType.RECAPTCHA_V2,
        TaskType.RECAPTCHA_V2_ENTERPRISE,
        TaskType.RECAPTCHA_V3,
    ):
        out.update(gRecaptchaResponse=token, token=token)
    else:
        out["token"] = token
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


# --- account statistics (Anti-Captcha's getQueueStats and getSpendingStats) -------------


def parse_queue_stats(body: bytes) -> TaskType | None:
    """Read a getQueueStats request: `queueId` from Anti-Captcha's list (no key needed)."""
    request = read_object(body)
    value = request.get("queueId")
    queue_id = _whole_number(value)
    if queue_id is None or queue_id not in QUEUES:
        known = ", ".join(str(q) for q in QUEUES)
        raise CapgateError(
            ErrorCode.BAD_REQUEST, f"queueId {value!r} is not one of the queues ({known})"
        )
    return QUEUES[queue_id]


def render_queue_stats(stats: QueueStats) -> bytes:
    """The getQueueStats answer: waiting, load, bid, speed, total as the docs show them
    (bid as a string, like their example), after the errorId every answer carries."""
    return _encoder.encode(
        {
            "errorId": 0,
            "waiting": stats.waiting,
            "load": stats.load,
            "bid": format_money(stats.bid, 6),
            "speed": stats.speed,
            "total": stats.total,
        }
    )


def parse_spending_stats(body: bytes) -> SpendingQuery:
    """Read a getSpendingStats request: clientKey, and the optional date (a Unix time in
    the first hour wanted), queue (a statistics queue name), softId and ip."""
    request = read_object(body)
    client_key = read_client_key(request)
    date, queue = request.get("date"), request.get("queue")
    start = None if date in (None, "") else _whole_number(date)
    if date not in (None, "") and (start is None or start < 0):
        raise CapgateError(ErrorCode.BAD_REQUEST, f"date {date!r} is not a Unix timestamp")
    types = None if queue in (None, "") else frozenset({_queue_type(queue)})
    soft_id, ip = request.get("softId"), request.get("ip")
    return SpendingQuery(
        client_key,
        None if start is None else float(start),
        types,
        None if soft_id in (None, "") or isinstance(soft_id, bool) else str(soft_id),
        ip if isinstance(ip, str) and ip else None,
    )


def render_spending_stats(records: list[SpendingRecord]) -> bytes:
    """The getSpendingStats answer: errorId and one record an hour (dateFrom, dateTill,
    volume, money in USD)."""
    data = [
        {
            "dateFrom": r.date_from,
            "dateTill": r.date_till,
            "volume": r.volume,
            "money": float(format_money(r.money, 6)),
        }
        for r in records
    ]
    return _encoder.encode({"errorId": 0, "data": data})


def _whole_number(value: Any) -> int | None:
    """An integer given as a number or a string of digits (bools are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 19:
        return int(value.strip())
    return None


def _queue_type(queue: Any) -> TaskType:
    if isinstance(queue, str):
        named = task_type_for(queue.strip())
        if named is not None:
            return named
        words = _SEPARATORS.sub("", queue.lower())
        for word, task_type in _QUEUE_WORDS:
            if word in words:
                return task_type
    raise CapgateError(
        ErrorCode.BAD_REQUEST,
        f"queue {queue!r} names no queue capgate keeps statistics for; use a name such as"
        ' "English ImageToText" or "Recaptcha Proxyless", or leave it out for every queue',
    )
