"""The SDK's exceptions: one hierarchy, each class saying whether a retry can help."""

from __future__ import annotations


class CaptchaError(Exception):
    """Anything that went wrong talking to capgate (or a vendor) about a task."""

    retryable = False

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


class AuthError(CaptchaError):
    """The key is missing or unknown. Retrying with the same key cannot help."""


class BalanceError(CaptchaError):
    """The balance is too low for the task. Top up first."""


class BadRequestError(CaptchaError):
    """The task or the request is malformed or not supported. Fix it before retrying."""


class NotFoundError(CaptchaError):
    """The task does not exist, belongs to another key, or its result has expired."""


class UnsolvableError(CaptchaError):
    """No solver could answer this task. A new task may fare better."""

    retryable = True


class TemporaryError(CaptchaError):
    """The server or the network failed for now. Retry after a pause."""

    retryable = True


class SolveTimeoutError(CaptchaError):
    """No answer came within the time the caller allowed. A new task may fare better."""

    retryable = True


# Every dialect's error codes by class, written without the ERROR_ prefix (AnySolver drops
# it; the others keep it): the Anti-Captcha family, CapSolver, AnySolver, Vast, uCaptcha.
_CODES: dict[type[CaptchaError], tuple[str, ...]] = {
    AuthError: (
        "KEY_DOES_NOT_EXIST",
        "KEY_DENIED_ACCESS",
        "INVALID_API_KEY",
        "IP_NOT_ALLOWED",
        "IP_BLOCKED",
    ),
    BalanceError: ("ZERO_BALANCE", "INSUFFICIENT_BALANCE"),
    NotFoundError: ("NO_SUCH_CAPCHA_ID", "TASKID_INVALID", "TASK_NOT_FOUND", "WRONG_CAPTCHA_ID"),
    UnsolvableError: ("CAPTCHA_UNSOLVABLE", "TASK_TIMEOUT"),
    TemporaryError: (
        "NO_SLOT_AVAILABLE",
        "SERVICE_UNAVALIABLE",  # sic: CapSolver's spelling
        "RATE_LIMIT",
        "TOO_MANY_REQUESTS",
        "NO_PROVIDERS_AVAILABLE",
        "INTERNAL_ERROR",
    ),
    BadRequestError: (
        "TASK_ABSENT",
        "TASK_NOT_SUPPORTED",
        "ZERO_CAPTCHA_FILESIZE",
        "TOO_BIG_CAPTCHA_FILESIZE",
        "IMAGE_TYPE_NOT_SUPPORTED",
        "NO_SUCH_METHOD",
        "BAD_PARAMETERS",
        "INVALID_TASK_DATA",
        "BAD_REQUEST",
        "INVALID_REQUEST",
        "IMAGE_TOO_SMALL",
        "IMAGE_TOO_LARGE",
        "IMAGE_CORRUPTED",
        "IDEMPOTENCY_CONFLICT",
        "REPORT_NOT_RECORDED",
    ),
}
ERROR_CLASSES: dict[str, type[CaptchaError]] = {
    code: cls for cls, codes in _CODES.items() for code in codes
}


def error_for(code: str, description: str) -> CaptchaError:
    """The exception for an error answer."""
    return ERROR_CLASSES.get(code.removeprefix("ERROR_"), CaptchaError)(description, code)
