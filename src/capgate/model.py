"""The internal language of capgate: tasks, their states, solutions, keys and errors.

Vendor shapes stop at the dialects; every other layer speaks only these types.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

MICROS = 1_000_000
"""Money is kept as integer micro-units of the account currency (USD): 0.001 == 1000."""


class TaskType(enum.StrEnum):
    """The kinds of task capgate knows, whatever a vendor calls them."""

    IMAGE_TO_TEXT = "ImageToText"
    RECAPTCHA_V2 = "RecaptchaV2"
    RECAPTCHA_V2_ENTERPRISE = "RecaptchaV2Enterprise"
    RECAPTCHA_V3 = "RecaptchaV3"
    HCAPTCHA = "HCaptcha"
    TURNSTILE = "Turnstile"
    FUNCAPTCHA = "FunCaptcha"
    GEETEST = "GeeTest"

    @property
    def is_token(self) -> bool:
        """True for tasks answered with a token rather than text read from an image."""
        return self is not TaskType.IMAGE_TO_TEXT


class TaskStatus(enum.IntEnum):
    """Where a task is in its life: queued → running → ready | failed."""

    QUEUED = 0
    RUNNING = 1
    READY = 2
    FAILED = 3

    @property
    def is_final(self) -> bool:
        """True once the task can no longer change."""
        return self >= TaskStatus.READY


class ErrorCode(enum.StrEnum):
    """Every error capgate can answer; each dialect maps these to its vendor's codes."""

    BAD_REQUEST = "BAD_REQUEST"
    KEY_DOES_NOT_EXIST = "KEY_DOES_NOT_EXIST"
    ZERO_BALANCE = "ZERO_BALANCE"
    TASK_ABSENT = "TASK_ABSENT"
    TASK_NOT_SUPPORTED = "TASK_NOT_SUPPORTED"
    ZERO_CAPTCHA_FILESIZE = "ZERO_CAPTCHA_FILESIZE"
    TOO_BIG_CAPTCHA_FILESIZE = "TOO_BIG_CAPTCHA_FILESIZE"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    IMAGE_TYPE_NOT_SUPPORTED = "IMAGE_TYPE_NOT_SUPPORTED"
    TASK_NOT_FOUND = "TASK_NOT_FOUND"
    POLL_LIMIT_EXCEEDED = "POLL_LIMIT_EXCEEDED"
    NOT_REPORTABLE = "NOT_REPORTABLE"
    # A report refused: too late after the answer, or the key reports too large a share.
    REPORT_NOT_RECORDED = "REPORT_NOT_RECORDED"
    # The key may be used only from the networks it allows (keys create --allow-ip).
    IP_NOT_ALLOWED = "IP_NOT_ALLOWED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    NO_SLOT = "NO_SLOT"
    CAPTCHA_UNSOLVABLE = "CAPTCHA_UNSOLVABLE"
    TASK_TIMEOUT = "TASK_TIMEOUT"
    NO_SUCH_METHOD = "NO_SUCH_METHOD"
    INTERNAL = "INTERNAL"


class CapgateError(Exception):
    """An error with a code from `ErrorCode` and a readable description."""

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class Solution(msgspec.Struct, omit_defaults=True):
    """What a solver found: text for image tasks, a token for token tasks."""

    text: str | None = None
    token: str | None = None
    user_agent: str | None = None
    score: float | None = None
    confidence: float | None = None
    # The upstream provider's own task id, to forward a report of a wrong answer.
    upstream_id: str | None = None
    # The version of the task's site model that answered (docs/learning.md), so that a
    # report of a wrong answer counts against that model.
    site_model: int | None = None
    # A local answer for a site whose own model was not sure enough of it (under the
    # site's threshold): a later solver (upstream) is asked, and it stands only if none
    # answers, whatever `ocr_min_confidence` says.
    unsure: bool = False


class TaskSpec(msgspec.Struct):
    """A task as a client asked for it, already translated from the vendor's shape."""

    type: TaskType
    params: dict[str, Any] = {}
    body: bytes | None = None


class Task(msgspec.Struct):
    """One stored task with everything its lifecycle recorded."""

    id: int
    key_id: int
    type: TaskType
    params: dict[str, Any]
    body: bytes | None
    status: TaskStatus
    created_at: float
    deadline_at: float
    cost: int
    ip: str
    # After this the task is "not found" and may be deleted (the vendor's retention rule).
    expires_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    polls: int = 0
    solver: str | None = None
    solution: Solution | None = None
    error_code: ErrorCode | None = None
    error_description: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    # The client's verdict on a ready answer: True correct, False incorrect (refunded).
    verdict: bool | None = None


class Key(msgspec.Struct):
    """An API key as stored: never the secret, only its SHA-256."""

    id: int
    name: str
    key_hash: bytes
    balance: int
    spent: int
    created_at: float
    # The dialect the root paths speak for this key (None: the Anti-Captcha family).
    dialect: str | None = None
    # A worker key may lease tasks and report their answers (remote solver processes).
    worker: bool = False
    # Paid tasks answered, and how many of them were refunded on a report of a wrong
    # answer: the share that the report cap (Service.report) limits.
    solved: int = 0
    refunds: int = 0
    # The networks (CIDR) the key may be used from; empty: any.
    allow_ips: list[str] = []
    # The site its image tasks belong to when they name none (`keys create --site NAME`).
    site: str | None = None
    # Options the client appended to the secret (`SECRET__recognizingthreshold_70`), for
    # the tasks of this request only; never stored.
    options: dict[str, Any] = {}


class Lease(msgspec.Struct):
    """A task handed to a solver, with the token that fences its completion."""

    task: Task
    token: str
    expires_at: float


def format_money(micros: int, places: int = 5) -> str:
    """Render micro-units as a decimal string, e.g. 1000 → '0.00100'."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    digits = f"{frac:06d}"
    if places < 6:
        # Round half up at the requested precision.
        scale = 10 ** (6 - places)
        rounded = (abs(micros) + scale // 2) // scale
        whole, frac_part = divmod(rounded, 10**places)
        return f"{sign}{whole}.{frac_part:0{places}d}"
    return f"{sign}{whole}.{digits}"


def parse_money(value: str | float | int) -> int:
    """Parse a price or balance given in currency units into micro-units."""
    from decimal import Decimal, InvalidOperation

    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not an amount of money: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount of money: {value!r}")
    return int((amount * MICROS).to_integral_value())
