"""The capgate Python SDK: solve captchas through capgate (or an Anti-Captcha family service).

from capgate.client import Client, ImageToText

with Client("http://127.0.0.1:8080", key) as client:
    print(client.solve(ImageToText.from_file("captcha.png")).value)
"""

from __future__ import annotations

from capgate.client._client import AsyncClient, Client
from capgate.client.errors import (
    AuthError,
    BadRequestError,
    BalanceError,
    CaptchaError,
    NotFoundError,
    SolveTimeoutError,
    TemporaryError,
    UnsolvableError,
)
from capgate.client.tasks import (
    HCaptcha,
    ImageToText,
    RecaptchaV2,
    Solution,
    Task,
    TokenTask,
    Turnstile,
)

__all__ = [
    "AsyncClient",
    "AuthError",
    "BadRequestError",
    "BalanceError",
    "CaptchaError",
    "Client",
    "HCaptcha",
    "ImageToText",
    "NotFoundError",
    "RecaptchaV2",
    "Solution",
    "SolveTimeoutError",
    "Task",
    "TemporaryError",
    "TokenTask",
    "Turnstile",
    "UnsolvableError",
]
