"""Client and AsyncClient: create a task, wait for it (long-poll where the server offers it,
polling otherwise), read balances, report answers, in any vendor's dialect. Built on httpx.

The request building and answer reading are shared (`_Protocol`); the two clients only
differ in how they wait for I/O.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from capgate.client.errors import (
    BadRequestError,
    CaptchaError,
    NotFoundError,
    SolveTimeoutError,
    TemporaryError,
    error_for,
)
from capgate.client.tasks import ImageToText, Solution, Task

LONG_POLL_SECONDS = 20.0

TaskId = int | str


@dataclass(frozen=True)
class _Call:
    """One HTTP request a protocol wants made."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


class _Protocol:
    """The Anti-Captcha family's wire format (Anti-Captcha, 2Captcha API v2, CapMonster
    Cloud, Vast), as capgate's root speaks it. Other dialects override what differs."""

    def __init__(self, key: str) -> None:
        self.key = key

    def task_payload(self, task: Task) -> dict[str, Any]:
        return task.payload()

    def create(self, task: Task) -> _Call:
        return _Call(
            "POST", "/createTask", {"clientKey": self.key, "task": self.task_payload(task)}
        )

    def created(self, answer: dict[str, Any]) -> tuple[TaskId, Solution | None]:
        """The new task's id, and its solution when the server answered it at once."""
        self.check(answer)
        task_id = answer["taskId"]
        if not isinstance(task_id, int | str) or isinstance(task_id, bool):
            raise TemporaryError(f"createTask answered no task id: {answer}")
        return task_id, self.solution(task_id, answer)

    def result(self, task_id: TaskId, wait: float) -> _Call:
        body: dict[str, Any] = {"clientKey": self.key, "taskId": task_id}
        if wait > 0:
            body["waitSeconds"] = round(wait, 3)
        return _Call("POST", "/getTaskResult", body)

    def solution(self, task_id: TaskId, answer: dict[str, Any]) -> Solution | None:
        self.check(answer)
        if answer.get("status") != "ready":
            return None
        return Solution.from_answer(task_id, answer)

    def balance(self) -> _Call:
        return _Call("POST", "/getBalance", {"clientKey": self.key})

    def report(self, task_id: TaskId, correct: bool) -> _Call:
        path = "/reportCorrect" if correct else "/reportIncorrect"
        return _Call("POST", path, {"clientKey": self.key, "taskId": task_id})

    def check(self, answer: dict[str, Any]) -> None:
        """Raise the error an answer carries (Vast also nests it under `error`)."""
        nested = answer.get("error")
        details = nested if isinstance(nested, dict) else answer
        if answer.get("errorId", 0) or answer.get("status") == "failed":
            code = answer.get("errorCode") or details.get("errorCode") or ""
            text = answer.get("errorDescription") or details.get("errorDescription") or ""
            raise error_for(str(code), str(text))


class _CapSolver(_Protocol):
    """CapSolver: string ids, images answered inside createTask, feedbackTask."""

    def report(self, task_id: TaskId, correct: bool) -> _Call:
        body = {"clientKey": self.key, "taskId": task_id, "result": {"invalid": not correct}}
        return _Call("POST", "/feedbackTask", body)


class _AnySolver(_Protocol):
    """AnySolver: ULIDs, image tasks as TextRecognition with imageBase64, no reports."""

    def task_payload(self, task: Task) -> dict[str, Any]:
        payload = task.payload()
        if isinstance(task, ImageToText):
            payload["type"] = "TextRecognition"
            payload["imageBase64"] = payload.pop("body")
        return payload

    def report(self, task_id: TaskId, correct: bool) -> _Call:
        raise BadRequestError("AnySolver has no method to report an answer", "NO_SUCH_METHOD")


class _UCaptcha(_Protocol):
    """uCaptcha's REST API: POST /task/submit, GET /task/result/:id, the key in a header."""

    def _headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def create(self, task: Task) -> _Call:
        return _Call("POST", "/task/submit", task.payload(), self._headers())

    def created(self, answer: dict[str, Any]) -> tuple[TaskId, Solution | None]:
        self.check(answer)
        task_id = answer.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise TemporaryError(f"/task/submit answered no task_id: {answer}")
        return task_id, None

    def result(self, task_id: TaskId, wait: float) -> _Call:
        params = {"wait": str(round(wait, 3))} if wait > 0 else {}
        return _Call("GET", f"/task/result/{task_id}", None, self._headers(), params)

    def solution(self, task_id: TaskId, answer: dict[str, Any]) -> Solution | None:
        self.check(answer)
        if answer.get("status") != "SUCCESS":
            return None
        result = answer.get("result") or {}
        text = result.get("text")
        return Solution(
            task_id=task_id,
            text=text,
            token=None if text else result.get("token"),
            user_agent=result.get("userAgent"),
            cost=0.0,
            solve_count=1,
            raw=answer,
        )

    def balance(self) -> _Call:
        raise BadRequestError("uCaptcha's REST API has no balance method", "NO_SUCH_METHOD")

    def report(self, task_id: TaskId, correct: bool) -> _Call:
        raise BadRequestError("uCaptcha's REST API has no report method", "NO_SUCH_METHOD")

    def check(self, answer: dict[str, Any]) -> None:
        if answer.get("status") == "NOT_FOUND":
            raise NotFoundError("the task does not exist (or its result expired)")
        if answer.get("status") == "FAILED":
            code = str(answer.get("code") or "ERROR_CAPTCHA_UNSOLVABLE")
            raise error_for(code, str(answer.get("error") or code))


# The `dialect` argument: which vendor API the base URL speaks.
DIALECTS: dict[str, type[_Protocol]] = {
    "anticaptcha": _Protocol,
    "2captcha": _Protocol,
    "capmonster": _Protocol,
    "vast": _Protocol,
    "capsolver": _CapSolver,
    "anysolver": _AnySolver,
    "ucaptcha": _UCaptcha,
}


def _protocol(dialect: str, key: str) -> _Protocol:
    try:
        return DIALECTS[dialect](key)
    except KeyError:
        known = ", ".join(DIALECTS)
        raise ValueError(f"unknown dialect {dialect!r} (known: {known})") from None


def _decode(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 500:
        raise TemporaryError(f"HTTP {response.status_code} from {response.request.url}")
    try:
        answer = response.json()
    except ValueError:
        if response.status_code == 404:
            raise NotFoundError(f"{response.request.url} does not exist") from None
        raise TemporaryError(f"not JSON from {response.request.url}") from None
    if not isinstance(answer, dict):
        raise TemporaryError(f"not a JSON object from {response.request.url}")
    return answer


def _server_waited(asked: float, took: float) -> bool:
    # A server that ignores waitSeconds answers at once; then the client polls instead.
    return asked <= 0 or took >= min(asked, 1.0) * 0.5


class Client:
    """A synchronous client for capgate, or any of the vendors' APIs it imitates.

    `dialect` names the API the base URL speaks: anticaptcha (the default, also 2captcha
    and capmonster), capsolver, anysolver, vast or ucaptcha. Against capgate, use its path
    for that dialect (e.g. http://host:8080/capsolver); against a vendor, its own URL.
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        poll_interval: float = 3.0,
        long_poll: bool = True,
        dialect: str = "anticaptcha",
        http: httpx.Client | None = None,
    ) -> None:
        self._protocol = _protocol(dialect, key)
        self.poll_interval = poll_interval
        self.long_poll = long_poll
        self._http = http or httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout + LONG_POLL_SECONDS
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _send(self, call: _Call) -> dict[str, Any]:
        try:
            response = self._http.request(
                call.method, call.path, json=call.body, headers=call.headers, params=call.params
            )
        except httpx.HTTPError as exc:
            raise TemporaryError(f"{type(exc).__name__}: {exc}") from exc
        return _decode(response)

    def create(self, task: Task) -> TaskId:
        """Create a task and return its id (an integer, or the vendor's string id)."""
        return self._protocol.created(self._send(self._protocol.create(task)))[0]

    def result(self, task_id: TaskId, wait: float = 0.0) -> Solution | None:
        """The solution if the task is ready (waiting up to `wait` s for it), else None."""
        return self._protocol.solution(task_id, self._send(self._protocol.result(task_id, wait)))

    def solve(self, task: Task, timeout: float = 120.0) -> Solution:
        """Create a task and wait for its solution."""
        task_id, answered = self._protocol.created(self._send(self._protocol.create(task)))
        if answered is not None:
            return answered
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SolveTimeoutError(f"task {task_id} not solved within {timeout} s")
            wait = min(LONG_POLL_SECONDS, remaining) if self.long_poll else 0.0
            started = time.monotonic()
            solution = self.result(task_id, wait)
            if solution is not None:
                return solution
            if not _server_waited(wait, time.monotonic() - started):
                time.sleep(min(self.poll_interval, max(0.0, remaining)))

    def balance(self) -> float:
        """The key's balance."""
        answer = self._send(self._protocol.balance())
        self._protocol.check(answer)
        return float(answer["balance"])

    def report(self, task_id: TaskId, correct: bool) -> None:
        """Tell the server whether an answer was right; a wrong one is refunded."""
        self._protocol.check(self._send(self._protocol.report(task_id, correct)))

    def report_incorrect(self, task_id: TaskId) -> None:
        """Report a wrong answer: the task is refunded, once."""
        self.report(task_id, correct=False)


class AsyncClient:
    """An asyncio client, the same as Client (and the same `dialect` choice)."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        poll_interval: float = 3.0,
        long_poll: bool = True,
        dialect: str = "anticaptcha",
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._protocol = _protocol(dialect, key)
        self.poll_interval = poll_interval
        self.long_poll = long_poll
        self._http = http or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout + LONG_POLL_SECONDS
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _send(self, call: _Call) -> dict[str, Any]:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.body, headers=call.headers, params=call.params
            )
        except httpx.HTTPError as exc:
            raise TemporaryError(f"{type(exc).__name__}: {exc}") from exc
        return _decode(response)

    async def create(self, task: Task) -> TaskId:
        """Create a task and return its id (an integer, or the vendor's string id)."""
        return self._protocol.created(await self._send(self._protocol.create(task)))[0]

    async def result(self, task_id: TaskId, wait: float = 0.0) -> Solution | None:
        """The solution if the task is ready (waiting up to `wait` s for it), else None."""
        answer = await self._send(self._protocol.result(task_id, wait))
        return self._protocol.solution(task_id, answer)

    async def solve(self, task: Task, timeout: float = 120.0) -> Solution:  # noqa: ASYNC109 - same API as Client
        """Create a task and wait for its solution."""
        created = await self._send(self._protocol.create(task))
        task_id, answered = self._protocol.created(created)
        if answered is not None:
            return answered
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SolveTimeoutError(f"task {task_id} not solved within {timeout} s")
            wait = min(LONG_POLL_SECONDS, remaining) if self.long_poll else 0.0
            started = time.monotonic()
            solution = await self.result(task_id, wait)
            if solution is not None:
                return solution
            if not _server_waited(wait, time.monotonic() - started):
                await asyncio.sleep(min(self.poll_interval, max(0.0, remaining)))

    async def balance(self) -> float:
        """The key's balance."""
        answer = await self._send(self._protocol.balance())
        self._protocol.check(answer)
        return float(answer["balance"])

    async def report(self, task_id: TaskId, correct: bool) -> None:
        """Tell the server whether an answer was right; a wrong one is refunded."""
        self._protocol.check(await self._send(self._protocol.report(task_id, correct)))

    async def report_incorrect(self, task_id: TaskId) -> None:
        """Report a wrong answer: the task is refunded, once."""
        await self.report(task_id, correct=False)


__all__ = ["AsyncClient", "CaptchaError", "Client"]
