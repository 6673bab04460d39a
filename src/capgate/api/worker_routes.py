"""The lease API for remote workers: external solver processes lease tasks over HTTP,
keep their leases alive, and report answers or failures, fenced by the lease token.

    POST /worker/lease     {"workerKey", "types", "limit", "leaseSeconds", "requestId"}
    POST /worker/extend    {"workerKey", "taskId", "token", "leaseSeconds"}
    POST /worker/complete  {"workerKey", "taskId", "token", "solution": {...}}
    POST /worker/fail      {"workerKey", "taskId", "token", "code", "description", "retry"}
    POST /worker/models    {"workerKey"}: the registry's serving models (docs/learning.md)
    POST /worker/model     {"workerKey", "site", "version"}: one version's files (base64)

A lease request carries a request id: retried after a lost answer, it returns the same
tasks. A late answer (its lease expired, the task went to someone else) gets `"ok": false`.
Each leased task names its site (`"site"`, or null), so that a worker reads it with the
site's model from the registry, as the server's own nodes do.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Annotated, Any

import msgspec

from capgate.api.http import Request, Response
from capgate.api.routing import Route, Routes, guarded
from capgate.model import CapgateError, ErrorCode, Lease, Solution, TaskType
from capgate.service import Service

log = logging.getLogger("capgate.api")


# Field names are the wire names (camelCase, as in the rest of the API).


class LeaseRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Ask for up to `limit` tasks of the given types."""

    workerKey: str
    types: list[str]
    limit: int = 1
    leaseSeconds: float = 30.0
    requestId: str | None = None


class ExtendRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Keep a lease alive."""

    workerKey: str
    taskId: int
    token: str
    leaseSeconds: float = 30.0


class WorkerSolution(msgspec.Struct, forbid_unknown_fields=True):
    """An answer as a worker reports it."""

    text: str | None = None
    token: str | None = None
    userAgent: str | None = None
    score: float | None = None
    confidence: float | None = None
    # The registry version of the task's site model that answered (checked against the
    # registry), or that the site's model was unsure and a generalist answered.
    siteModel: int | None = None
    unsure: bool = False


class ModelsRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Ask which models the registry serves."""

    workerKey: str


class ModelRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Ask for one registry version's files."""

    workerKey: str
    site: str
    # Bounded: a number past 64 bits is no version (SQLite cannot even look it up).
    version: Annotated[int, msgspec.Meta(ge=1, le=2**62)]


class CompleteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Report an answer."""

    workerKey: str
    taskId: int
    token: str
    solution: WorkerSolution


class FailRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Report that the task could not be answered."""

    workerKey: str
    taskId: int
    token: str
    code: str = "CAPTCHA_UNSOLVABLE"
    description: str = ""
    retry: bool = False


_encoder = msgspec.json.Encoder()
_OK = b'{"ok":true}'
_LATE = b'{"ok":false,"error":"LEASE_LOST","description":"The lease is no longer held"}'


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise CapgateError(ErrorCode.BAD_REQUEST, str(exc)) from None


def _lease_json(lease: Lease, site: str | None) -> dict[str, Any]:
    task = lease.task
    return {
        "site": site,
        "taskId": task.id,
        "token": lease.token,
        "expiresAt": lease.expires_at,
        "type": task.type.value,
        "params": task.params,
        "body": None if task.body is None else base64.b64encode(task.body).decode("ascii"),
        "attempt": task.attempts,
    }


class EncodedModels:
    """The last few /worker/model answers, as sent. A model's files are about 2 MB: read
    from the store, base64-encoded and made JSON, each ask cost the event loop several
    milliseconds, so a worker key asking again and again (every worker of a fleet after
    a promotion, or one gone wrong) could stall the node. A version's files never change;
    an answer is kept at most `seconds`, so that one the registry has since dropped stops
    being served soon after."""

    def __init__(self, size: int = 4, seconds: float = 60.0) -> None:
        self.size = size
        self.seconds = seconds
        self._answers: dict[tuple[str, int], tuple[float, bytes]] = {}

    def get(self, site: str, version: int) -> bytes | None:
        kept = self._answers.get((site, version))
        if kept is None or time.monotonic() - kept[0] > self.seconds:
            return None
        return kept[1]

    def put(self, site: str, version: int, answer: bytes) -> None:
        if len(self._answers) >= self.size:
            oldest = min(self._answers, key=lambda k: self._answers[k][0])
            del self._answers[oldest]
        self._answers[(site, version)] = (time.monotonic(), answer)


def mount_workers(routes: Routes, service: Service) -> None:
    """Serve the lease API under /worker."""

    async def lease(request: Request) -> Response:
        asked: LeaseRequest = _decode(request.body, LeaseRequest)
        worker = await service.authenticate_worker(asked.workerKey, request.client_ip)
        try:
            types = {TaskType(name) for name in asked.types}
        except ValueError:
            known = ", ".join(t.value for t in TaskType)
            raise CapgateError(ErrorCode.BAD_REQUEST, f"types must be among: {known}") from None
        leases = await service.lease_for_worker(
            worker, types, asked.limit, asked.leaseSeconds, asked.requestId
        )
        sites = [await service.site_of(x.task) for x in leases]
        return Response(
            _encoder.encode(
                {"leases": [_lease_json(x, s) for x, s in zip(leases, sites, strict=True)]}
            )
        )

    async def extend(request: Request) -> Response:
        asked: ExtendRequest = _decode(request.body, ExtendRequest)
        worker = await service.authenticate_worker(asked.workerKey, request.client_ip)
        held = await service.extend_for_worker(
            worker, asked.taskId, asked.token, asked.leaseSeconds
        )
        return Response(_OK if held else _LATE)

    async def complete(request: Request) -> Response:
        asked: CompleteRequest = _decode(request.body, CompleteRequest)
        worker = await service.authenticate_worker(asked.workerKey, request.client_ip)
        given = asked.solution
        solution = Solution(
            text=given.text,
            token=given.token,
            user_agent=given.userAgent,
            score=given.score,
            confidence=given.confidence,
            site_model=given.siteModel,
            unsure=given.unsure,
        )
        done = await service.complete_for_worker(worker, asked.taskId, asked.token, solution)
        return Response(_OK if done else _LATE)

    async def models(request: Request) -> Response:
        asked: ModelsRequest = _decode(request.body, ModelsRequest)
        await service.authenticate_worker(asked.workerKey, request.client_ip)
        serving = await service.store.serving_models()
        listed = [
            {"site": m.site, "version": m.version, "threshold": m.threshold,
             "precision": m.precision}
            for m in serving.values()
        ]  # fmt: skip
        return Response(_encoder.encode({"models": listed}))

    encoded = EncodedModels()

    async def model(request: Request) -> Response:
        asked: ModelRequest = _decode(request.body, ModelRequest)
        await service.authenticate_worker(asked.workerKey, request.client_ip)
        site = asked.site[:255]
        answer = encoded.get(site, asked.version)
        if answer is None:
            files = await service.store.model_files(site, asked.version)
            if files is None:
                raise CapgateError(ErrorCode.BAD_REQUEST, "no such model version in the registry")
            onnx, spec = files
            answer = _encoder.encode(
                {
                    "site": site,
                    "version": asked.version,
                    "onnx": base64.b64encode(onnx).decode("ascii"),
                    "spec": base64.b64encode(spec).decode("ascii"),
                }
            )
            encoded.put(site, asked.version, answer)
        return Response(answer)

    async def fail(request: Request) -> Response:
        asked: FailRequest = _decode(request.body, FailRequest)
        worker = await service.authenticate_worker(asked.workerKey, request.client_ip)
        try:
            code = ErrorCode(asked.code)
        except ValueError:
            raise CapgateError(ErrorCode.BAD_REQUEST, f"unknown code {asked.code!r}") from None
        done = await service.fail_for_worker(
            worker, asked.taskId, asked.token, code, asked.description, asked.retry
        )
        return Response(_OK if done else _LATE)

    def render(request: Request, error: CapgateError) -> Response:
        return _on_error(error)

    for name, handler in (
        ("lease", lease),
        ("extend", extend),
        ("complete", complete),
        ("fail", fail),
        ("models", models),
        ("model", model),
    ):
        routes.add(
            f"/worker/{name}",
            Route(
                guarded(handler, render, label="worker", metrics=service.metrics, method="POST"),
                _on_error,
            ),
        )


_STATUS = {
    ErrorCode.KEY_DOES_NOT_EXIST: 401,
    ErrorCode.IP_NOT_ALLOWED: 403,
    ErrorCode.INTERNAL: 503,
}


def _on_error(error: CapgateError) -> Response:
    body = _encoder.encode(
        {"ok": False, "error": error.code.value, "description": error.description}
    )
    return Response(body, status=_STATUS.get(error.code, 400))
