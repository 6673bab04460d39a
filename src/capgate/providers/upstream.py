"""An upstream provider as a solver: forwards a task to a commercial service and polls it.

One adapter serves every kind in `kinds.KINDS`; what differs between vendors is data there.
Failures say whether the provider itself is at fault (`retry=True`: transport errors,
timeouts, the vendor's own errors), which the router's circuit breaker counts, or only this
task (`retry=False`: unsolvable, not supported), which moves the task on without blaming
the provider. The API key never appears in a log line or an error description.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from capgate.config import ProviderSettings
from capgate.model import ErrorCode, Solution, Task, TaskType
from capgate.providers.kinds import KINDS, Kind
from capgate.solvers.base import SolveError, Solver

log = logging.getLogger("capgate.providers")

# Task parameters that are capgate's own business, never forwarded.
# Fields that mean something to capgate only (routing, grouping, its own bookkeeping)
# and the client's software id with capgate: never forwarded to a provider.
_LOCAL_PARAMS = frozenset(
    {"vendorType", "callbackUrl", "provider", "routingPolicy", "imageTasks", "softId", "appId"}
)
_CODE = re.compile(r"[^A-Za-z0-9_]")


class UpstreamProvider(Solver):
    """Solves tasks by forwarding them to one configured upstream service."""

    upstream = True

    def __init__(
        self,
        settings: ProviderSettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.kind: Kind = KINDS[settings.kind]
        self.name = settings.name
        supported = frozenset(self.kind.type_names)
        self.types = frozenset(settings.types) & supported if settings.types else supported
        self.base_url = (settings.url or self.kind.default_url).rstrip("/")
        self.attempt_seconds = settings.timeout_seconds
        self._sleep = sleep
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._http: httpx.AsyncClient | None = None

    def accepts(self, task_type: TaskType, params: Mapping[str, Any]) -> bool:
        return task_type in self.types

    def price(self, task_type: TaskType) -> int | None:
        """What a task of this type costs the operator here, if configured."""
        return self.settings.prices.get(task_type)

    async def start(self) -> None:
        if not self.base_url:
            raise ValueError(f"provider {self.name!r}: its kind has no public URL; set url")
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            headers={"user-agent": "capgate"},
            follow_redirects=False,
        )

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- solving ----------------------------------------------------------------------

    async def solve(self, task: Task) -> Solution:
        async with self._slots:
            upstream_id, solution = await self._create(task)
            if solution is not None:
                return solution
            kind, settings = self.kind, self.settings
            first = settings.first_wait_seconds or (
                kind.first_wait_image
                if task.type is TaskType.IMAGE_TO_TEXT
                else kind.first_wait_token
            )
            interval = settings.poll_interval_seconds or kind.interval
            await self._sleep(first)
            for _ in range(settings.max_polls):
                solution = await self._poll(upstream_id, task.type)
                if solution is not None:
                    return solution
                await self._sleep(interval)
            raise SolveError(
                ErrorCode.TASK_TIMEOUT,
                f"Provider {self.name} gave no answer in {settings.max_polls} polls",
                retry=True,
            )

    async def _create(self, task: Task) -> tuple[str, Solution | None]:
        fields = {k: v for k, v in task.params.items() if k not in _LOCAL_PARAMS}
        fields["type"] = self.kind.type_names[task.type]
        if task.body is not None:
            fields[self.kind.image_field] = base64.b64encode(task.body).decode()
        if self.kind.rest:
            status, answer = await self._call("POST", "/task/submit", fields)
            self._check_rest(status, answer)
            upstream_id = answer.get("task_id")
            if not isinstance(upstream_id, str) or not upstream_id:
                raise self._broken("createTask answered no task_id")
            return upstream_id, self._rest_solution(answer, task.type)
        _, answer = await self._call("POST", "/createTask", {"task": fields})
        self._check_json(answer)
        upstream_id = answer.get("taskId")
        if not isinstance(upstream_id, int | str) or isinstance(upstream_id, bool):
            raise self._broken("createTask answered no taskId")
        # CapSolver answers recognition tasks inside createTask.
        return str(upstream_id), self._json_solution(answer, task.type, str(upstream_id))

    async def _poll(self, upstream_id: str, task_type: TaskType) -> Solution | None:
        if self.kind.rest:
            status, answer = await self._call("GET", f"/task/result/{upstream_id}", None)
            self._check_rest(status, answer)
            return self._rest_solution({**answer, "task_id": upstream_id}, task_type)
        _, answer = await self._call("POST", "/getTaskResult", {"taskId": _wire_id(upstream_id)})
        self._check_json(answer)
        return self._json_solution(answer, task_type, upstream_id)

    # --- balance and reports ----------------------------------------------------------

    async def balance(self) -> float | None:
        """The account's balance there (None: the API has no balance method)."""
        if self.kind.rest:
            return None
        _, answer = await self._call("POST", "/getBalance", {})
        self._check_json(answer)
        value = answer.get("balance")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._broken("getBalance answered no balance")
        return float(value)

    async def report_incorrect(self, task: Task) -> bool:
        """Tell the provider its answer was wrong; False when its API has no such method."""
        solution = task.solution
        if solution is None or solution.upstream_id is None:
            return False
        method = (
            self.kind.report_image
            if task.type is TaskType.IMAGE_TO_TEXT
            else self.kind.report_other
        )
        if method is None:
            return False
        body: dict[str, Any] = {"taskId": _wire_id(solution.upstream_id)}
        if method == "feedbackTask":  # CapSolver: the verdict is in the body.
            body["result"] = {"invalid": True}
        _, answer = await self._call("POST", f"/{method}", body)
        self._check_json(answer)
        return True

    # --- the wire ---------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        if self._http is None:
            raise SolveError(ErrorCode.INTERNAL, f"Provider {self.name} is not started", retry=True)
        headers: dict[str, str] = {}
        if self.kind.rest:
            headers["x-api-key"] = self.settings.api_key
        elif body is not None:
            body = {"clientKey": self.settings.api_key, **body}
        try:
            response = await self._http.request(
                method, self.base_url + path, json=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise self._broken(f"{type(exc).__name__} on {path}") from None
        if response.status_code >= 500:
            raise self._broken(f"HTTP {response.status_code} on {path}")
        try:
            answer = response.json()
        except ValueError:
            raise self._broken(f"not JSON from {path}") from None
        if not isinstance(answer, dict):
            raise self._broken(f"not a JSON object from {path}")
        return response.status_code, answer

    def _check_json(self, answer: dict[str, Any]) -> None:
        error = answer.get("error")
        nested = error if isinstance(error, dict) else {}
        failed = answer.get("errorId") not in (0, None) or answer.get("status") == "failed"
        if failed:
            code = answer.get("errorCode") or nested.get("errorCode") or "ERROR_UNKNOWN"
            raise self._vendor_error(str(code))

    def _check_rest(self, status: int, answer: dict[str, Any]) -> None:
        if status == 404 or answer.get("status") == "NOT_FOUND":
            raise self._broken("the task was lost (NOT_FOUND)")
        if status >= 400 or answer.get("status") == "FAILED":
            code = answer.get("code")
            raise self._vendor_error(str(code) if code else "ERROR_CAPTCHA_UNSOLVABLE")

    def _json_solution(
        self, answer: dict[str, Any], task_type: TaskType, upstream_id: str
    ) -> Solution | None:
        solution = answer.get("solution")
        if answer.get("status") != "ready" or not isinstance(solution, dict):
            return None
        return self._solution(solution, task_type, upstream_id)

    def _rest_solution(self, answer: dict[str, Any], task_type: TaskType) -> Solution | None:
        result = answer.get("result")
        if answer.get("status") != "SUCCESS" or not isinstance(result, dict):
            return None
        return self._solution(result, task_type, str(answer.get("task_id", "")))

    def _solution(self, fields: dict[str, Any], task_type: TaskType, upstream_id: str) -> Solution:
        def text(name: str) -> str | None:
            value = fields.get(name)
            return value if isinstance(value, str) and value else None

        user_agent = text("userAgent")
        if task_type is TaskType.IMAGE_TO_TEXT:
            answer = text("text") or text("token")
            if answer is None:
                raise self._vendor_error("ERROR_CAPTCHA_UNSOLVABLE")
            return Solution(text=answer, user_agent=user_agent, upstream_id=upstream_id)
        token = text("gRecaptchaResponse") or text("token")
        if token is None:
            raise self._vendor_error("ERROR_CAPTCHA_UNSOLVABLE")
        return Solution(token=token, user_agent=user_agent, upstream_id=upstream_id)

    def _broken(self, what: str) -> SolveError:
        log.warning("provider %s: %s", self.name, what)
        return SolveError(ErrorCode.INTERNAL, f"Provider {self.name} failed: {what}", retry=True)

    def _vendor_error(self, code: str) -> SolveError:
        # Only the vendor's code, cleaned, reaches the client: never its free text.
        code = _CODE.sub("", code)[:64] or "ERROR_UNKNOWN"
        upper = code.upper()
        if "UNSOLVABLE" in upper:
            internal, retry = ErrorCode.CAPTCHA_UNSOLVABLE, False
        elif any(word in upper for word in ("NOT_SUPPORTED", "TASK_ABSENT", "INVALID_TASK")):
            internal, retry = ErrorCode.TASK_NOT_SUPPORTED, False
        elif "TIMEOUT" in upper:
            internal, retry = ErrorCode.TASK_TIMEOUT, True
        else:  # The key, the balance, its capacity: the provider cannot work for us now.
            internal, retry = ErrorCode.INTERNAL, True
        log.info("provider %s answered %s", self.name, code)
        return SolveError(internal, f"Provider {self.name} answered {code}", retry=retry)


def _wire_id(upstream_id: str) -> int | str:
    """The id as the vendor gave it: the Anti-Captcha family's ids are integers."""
    return int(upstream_id) if upstream_id.isascii() and upstream_id.isdigit() else upstream_id
