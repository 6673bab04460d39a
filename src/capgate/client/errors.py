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


# The Anti-Captcha family's error codes (what capgate's root answers), by class.
ERROR_CLASSES: dict[str, type[CaptchaError]] = {
    "ERROR_KEY_DOES_NOT_EXIST": AuthError,
    "ERROR_ZERO_BALANCE": BalanceError,
    "ERROR_NO_SUCH_CAPCHA_ID": NotFoundError,
    "ERROR_CAPTCHA_UNSOLVABLE": UnsolvableError,
    "ERROR_NO_SLOT_AVAILABLE": TemporaryError,
    "ERROR_TASK_ABSENT": BadRequestError,
    "ERROR_TASK_NOT_SUPPORTED": BadRequestError,
    "ERROR_ZERO_CAPTCHA_FILESIZE": BadRequestError,
    "ERROR_TOO_BIG_CAPTCHA_FILESIZE": BadRequestError,
    "ERROR_IMAGE_TYPE_NOT_SUPPORTED": BadRequestError,
    "ERROR_NO_SUCH_METHOD": BadRequestError,
    "ERROR_BAD_PARAMETERS": BadRequestError,
}


def error_for(code: str, description: str) -> CaptchaError:
    """The exception for an error answer."""
    return ERROR_CLASSES.get(code, CaptchaError)(description, code)
