"""Typed tasks and solutions for the SDK, turned into the createTask payload clients send."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageToText:
    """An image captcha to read. `numeric`: 1 digits only, 2 letters only; `phrase`: two or
    more words; `math`: a sum, answered with its value."""

    image: bytes
    numeric: int = 0
    case: bool = False
    min_length: int = 0
    max_length: int = 0
    phrase: bool = False
    math: bool = False

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> ImageToText:
        """The task for an image file."""
        return cls(Path(path).read_bytes(), **options)

    def payload(self) -> dict[str, Any]:
        """The task object as createTask takes it."""
        task: dict[str, Any] = {
            "type": "ImageToTextTask",
            "body": base64.b64encode(self.image).decode("ascii"),
        }
        for name, value in (
            ("numeric", self.numeric),
            ("case", self.case),
            ("minLength", self.min_length),
            ("maxLength", self.max_length),
            ("phrase", self.phrase),
            ("math", self.math),
        ):
            if value:
                task[name] = value
        return task


@dataclass(frozen=True)
class TokenTask:
    """A token task (reCAPTCHA, hCaptcha, Turnstile): the page and its site key."""

    type: str
    website_url: str
    website_key: str
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The task object as createTask takes it."""
        return {
            "type": self.type,
            "websiteURL": self.website_url,
            "websiteKey": self.website_key,
            **self.extra,
        }


def RecaptchaV2(website_url: str, website_key: str, **extra: Any) -> TokenTask:
    """A reCAPTCHA v2 task (proxyless)."""
    return TokenTask("RecaptchaV2TaskProxyless", website_url, website_key, extra)


def HCaptcha(website_url: str, website_key: str, **extra: Any) -> TokenTask:
    """An hCaptcha task (proxyless)."""
    return TokenTask("HCaptchaTaskProxyless", website_url, website_key, extra)


def Turnstile(website_url: str, website_key: str, **extra: Any) -> TokenTask:
    """A Cloudflare Turnstile task (proxyless)."""
    return TokenTask("TurnstileTaskProxyless", website_url, website_key, extra)


Task = ImageToText | TokenTask


@dataclass(frozen=True)
class Solution:
    """A solved task: the text or token, and what it cost."""

    task_id: int | str
    text: str | None
    token: str | None
    user_agent: str | None
    cost: float
    solve_count: int
    raw: dict[str, Any]

    @property
    def value(self) -> str:
        """The answer to type or submit: the text of an image, else the token."""
        return self.text if self.text is not None else self.token or ""

    @classmethod
    def from_answer(cls, task_id: int | str, answer: dict[str, Any]) -> Solution:
        """The solution in a ready getTaskResult answer."""
        solution = answer.get("solution") or {}
        token = solution.get("token") or solution.get("gRecaptchaResponse")
        return cls(
            task_id=task_id,
            text=solution.get("text"),
            token=token,
            user_agent=solution.get("userAgent"),
            cost=float(answer.get("cost") or 0),
            solve_count=int(answer.get("solveCount") or 0),
            raw=answer,
        )
