"""Client and AsyncClient: create a task, wait for it (long-poll where the server offers it,
polling otherwise), read balances, report answers. Built on httpx.

The request building and answer reading are shared (`_Protocol`); the two clients only
differ in how they wait for I/O.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from capgate.client.errors import (
    CaptchaError,
    NotFoundError,
    SolveTimeoutError,
    TemporaryError,
    error_for,
)
from capgate.client.tasks import Solution, Task

LONG_POLL_SECONDS = 20.0


class _Protocol:
    """The Anti-Captcha family's wire format, as capgate's root speaks it."""

    def __init__(self, key: str) -> None:
        self.key = key

    def create(self, task: Task) -> tuple[str, dict[str, Any]]:
        return "/createTask", {"clientKey": self.key, "task": task.payload()}

    def created(self, answer: dict[str, Any]) -> int:
        _check(answer)
        return int(answer["taskId"])

    def result(self, task_id: int, wait: float) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"clientKey": self.key, "taskId": task_id}
        if wait > 0:
            body["waitSeconds"] = round(wait, 3)
        return "/getTaskResult", body

    def solution(self, task_id: int, answer: dict[str, Any]) -> Solution | None:
        _check(answer)
        if answer.get("status") != "ready":
            return None
        return Solution.from_answer(task_id, answer)

    def balance(self) -> tuple[str, dict[str, Any]]:
        return "/getBalance", {"clientKey": self.key}

    def report(self, task_id: int, correct: bool) -> tuple[str, dict[str, Any]]:
        path = "/reportCorrect" if correct else "/reportIncorrect"
        return path, {"clientKey": self.key, "taskId": task_id}


def _check(answer: dict[str, Any]) -> None:
    error_id = answer.get("errorId", 0)
    if error_id:
        raise error_for(str(answer.get("errorCode", "")), str(answer.get("errorDescription", "")))


def _decode(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 500:
        raise TemporaryError(f"HTTP {response.status_code} from {response.request.url}")
    if response.status_code == 404:
        raise NotFoundError(f"{response.request.url} does not exist")
    try:
        answer = response.json()
    except ValueError:
        raise TemporaryError(f"not JSON from {response.request.url}") from None
    if not isinstance(answer, dict):
        raise TemporaryError(f"not a JSON object from {response.request.url}")
    return answer


def _server_waited(asked: float, took: float) -> bool:
    # A server that ignores waitSeconds answers at once; then the client polls instead.
    return asked <= 0 or took >= min(asked, 1.0) * 0.5


class Client:
    """A synchronous client for capgate (or any Anti-Captcha family service)."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        poll_interval: float = 3.0,
        long_poll: bool = True,
        http: httpx.Client | None = None,
    ) -> None:
        self._protocol = _Protocol(key)
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

    def _post(self, request: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        path, body = request
        try:
            return _decode(self._http.post(path, json=body))
        except httpx.HTTPError as exc:
            raise TemporaryError(f"{type(exc).__name__}: {exc}") from exc

    def create(self, task: Task) -> int:
        """Create a task and return its id."""
        return self._protocol.created(self._post(self._protocol.create(task)))

    def result(self, task_id: int, wait: float = 0.0) -> Solution | None:
        """The solution if the task is ready (waiting up to `wait` s for it), else None."""
        return self._protocol.solution(task_id, self._post(self._protocol.result(task_id, wait)))

    def solve(self, task: Task, timeout: float = 120.0) -> Solution:
        """Create a task and wait for its solution."""
        task_id = self.create(task)
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
        answer = self._post(self._protocol.balance())
        _check(answer)
        return float(answer["balance"])

    def report(self, task_id: int, correct: bool) -> None:
        """Tell the server whether an answer was right; a wrong one is refunded."""
        _check(self._post(self._protocol.report(task_id, correct)))


class AsyncClient:
    """An asyncio client for capgate (or any Anti-Captcha family service)."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        poll_interval: float = 3.0,
        long_poll: bool = True,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._protocol = _Protocol(key)
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

    async def _post(self, request: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        path, body = request
        try:
            return _decode(await self._http.post(path, json=body))
        except httpx.HTTPError as exc:
            raise TemporaryError(f"{type(exc).__name__}: {exc}") from exc

    async def create(self, task: Task) -> int:
        """Create a task and return its id."""
        return self._protocol.created(await self._post(self._protocol.create(task)))

    async def result(self, task_id: int, wait: float = 0.0) -> Solution | None:
        """The solution if the task is ready (waiting up to `wait` s for it), else None."""
        answer = await self._post(self._protocol.result(task_id, wait))
        return self._protocol.solution(task_id, answer)

    async def solve(self, task: Task, timeout: float = 120.0) -> Solution:  # noqa: ASYNC109 - same API as Client
        """Create a task and wait for its solution."""
        task_id = await self.create(task)
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
        answer = await self._post(self._protocol.balance())
        _check(answer)
        return float(answer["balance"])

    async def report(self, task_id: int, correct: bool) -> None:
        """Tell the server whether an answer was right; a wrong one is refunded."""
        _check(await self._post(self._protocol.report(task_id, correct)))


__all__ = ["AsyncClient", "CaptchaError", "Client"]
