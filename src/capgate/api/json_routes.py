"""Routes of the createTask / getTaskResult family, for any JSON dialect module.

The glue between HTTP and the service: parse with the dialect, act through the service,
render with the dialect. Every failure is answered in the dialect's own error shape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from capgate.api.http import Request, Response
from capgate.api.routing import ErrorRenderer, Handler, Route, Routes, guarded
from capgate.config import Settings
from capgate.dialects.base import ImageGroups, JsonDialect, StatsDialect
from capgate.images import check_image
from capgate.model import CapgateError, ErrorCode, Key, Task, TaskSpec
from capgate.service import Service

# The dialect a stored task's own client speaks, where that differs from the route's.
Origin = Callable[[Task], JsonDialect | None]

log = logging.getLogger("capgate.api")


def mount_json_dialect(
    routes: Routes, service: Service, settings: Settings, prefix: str, dialect: JsonDialect
) -> None:
    """Serve a dialect's methods under `prefix`."""
    on_error = _error_renderer(dialect)
    for name, handler in json_handlers(service, settings, dialect, prefix.strip("/")).items():
        routes.add(f"{prefix}/{name}", Route(handler, on_error))


def mount_root(
    routes: Routes,
    service: Service,
    settings: Settings,
    default: JsonDialect,
    by_name: dict[str, JsonDialect],
) -> None:
    """Serve the root paths: in `default`'s dialect, or in the one a key has chosen.

    Some clients can change only their host, not their paths; a key whose `dialect` names
    one of `by_name` gets that dialect's exact shapes at the root.
    """
    capsolver = by_name.get("capsolver")

    def origin(task: Task) -> JsonDialect | None:
        # A task whose create carried CapSolver's appId came from a CapSolver client that
        # reached the root (see below): its polls get CapSolver's shapes too.
        app_id = task.params.get("appId")
        return capsolver if isinstance(app_id, str) and app_id else None

    default_handlers = json_handlers(service, settings, default, "root", origin)
    tables = {name: json_handlers(service, settings, d, "root") for name, d in by_name.items()}
    methods = set(default_handlers).union(*tables.values())

    async def key_dialect(request: Request) -> str | None:
        try:
            secret = _key_peek.decode(request.body).clientKey
            return (await service.lookup_key(secret)).dialect if secret else None
        except (msgspec.DecodeError, RecursionError, CapgateError):
            return None  # The default handler answers the problem in its own terms.

    def root(method: str) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                chosen = await key_dialect(request)
            except Exception:
                # The store failed (Redis down): the dialect handlers' guard is not around
                # this lookup, so answer its temporary error here, in the default dialect.
                log.exception("unexpected error on %s", request.path)
                service.metrics.request("root", ErrorCode.INTERNAL.value)
                error = CapgateError(ErrorCode.INTERNAL, "Temporary server error; try again")
                return _error_renderer(default)(error)
            if chosen is None and method == "createTask" and _app_id_field(request.body):
                # Only CapSolver documents `appId` at createTask's top level, and its SDKs
                # send one: python3-capsolver joins "/createTask" onto a base URL without a
                # trailing slash, dropping the /capsolver prefix, and lands here.
                chosen = "capsolver"
            dialect, table = default, default_handlers
            if chosen is not None and chosen in tables:
                dialect, table = by_name[chosen], tables[chosen]
            if method in table:
                return await table[method](request)
            missing = CapgateError(ErrorCode.NO_SUCH_METHOD, f"There is no method {method}")
            return _error_renderer(dialect)(missing)

        return handler

    on_error = _error_renderer(default)
    for method in sorted(methods):
        routes.add(f"/{method}", Route(root(method), on_error))


class _TopLevelPeek(msgspec.Struct):
    """Top-level fields read beside a dialect's own parse."""

    idempotencyKey: Any = None
    appId: Any = None


_top_level_peek = msgspec.json.Decoder(_TopLevelPeek)


def _top_level_string(body: bytes, name: str) -> str | None:
    """A top-level field of a JSON body (one of _TopLevelPeek's) if it is a non-empty
    string; the body is decoded again only when the name is in it at all."""
    if name.encode() not in body:  # Almost every request: skip decoding it again.
        return None
    try:
        value = getattr(_top_level_peek.decode(body), name)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, str) and value else None


def _idempotency_field(body: bytes) -> str | None:
    """The JSON dialects' `idempotencyKey` field, for clients that cannot set headers."""
    return _top_level_string(body, "idempotencyKey")


class _WaitPeek(msgspec.Struct):
    waitSeconds: Any = None


_wait_peek = msgspec.json.Decoder(_WaitPeek)


def _wait_seconds(body: bytes) -> float:
    """The opt-in long-poll: `"waitSeconds": N` answers as soon as the task finishes."""
    if b"waitSeconds" not in body:  # Almost every poll: skip decoding it again.
        return 0.0
    try:
        value = _wait_peek.decode(body).waitSeconds
    except (msgspec.DecodeError, RecursionError):
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if 0 < value < float("inf") else 0.0


class _KeyPeek(msgspec.Struct):
    clientKey: str | None = None


_key_peek = msgspec.json.Decoder(_KeyPeek)


def _app_id_field(body: bytes) -> bool:
    """Whether a createTask body carries CapSolver's `appId` (a non-empty string)."""
    return _top_level_string(body, "appId") is not None


_image_groups: dict[int, ImageGroups | None] = {}


def _groups_of(dialect: JsonDialect) -> ImageGroups | None:
    """The dialect as ImageGroups if it is one. Asked once per dialect module: an
    isinstance check against a runtime-checkable Protocol walks its members every time,
    and was a third of a getTaskResult's server time."""
    key = id(dialect)  # Dialects are modules: they live as long as the process.
    if key not in _image_groups:
        _image_groups[key] = dialect if isinstance(dialect, ImageGroups) else None
    return _image_groups[key]


def _error_renderer(dialect: JsonDialect) -> ErrorRenderer:
    def on_error(error: CapgateError) -> Response:
        return Response(dialect.render_error(error))

    return on_error


def json_handlers(
    service: Service,
    settings: Settings,
    dialect: JsonDialect,
    label: str,
    origin: Origin | None = None,
) -> dict[str, Handler]:
    """Every method of a dialect, by name, each answering failures in the dialect's shape.

    `origin` names, for a stored task, another dialect its results are answered in.
    """
    own_groups = _groups_of(dialect)

    async def create_task(request: Request) -> Response:
        create = dialect.parse_create(request.body)
        key = await service.authenticate(create.client_key, request.client_ip)
        if own_groups is not None:
            specs = own_groups.parse_tasks(create.task)
            if len(specs) > 1:
                return await create_group(request, key, own_groups, specs)
            spec = specs[0]
        else:
            spec = dialect.parse_task(create.task)
        task = await service.create_task(
            key,
            spec,
            request.client_ip,
            retention_seconds=dialect.RETENTION_SECONDS,
            idempotency_key=request.idempotency_key or _idempotency_field(request.body),
        )
        if spec.type in dialect.SYNC_TYPES:
            task = await service.wait_until_final(task, settings.sync_wait_seconds)
        return Response(dialect.render_created(task))

    async def create_group(
        request: Request, key: Key, groups: ImageGroups, specs: list[TaskSpec]
    ) -> Response:
        """Several images, one task each: the others first, so the first can name them."""
        for spec in specs:  # Every image is checked before any task is made of one.
            if spec.body is not None:
                check_image(spec.body, settings.max_image_bytes, settings.max_image_pixels)
        await service.check_group(key, specs)  # and every limit the creates would meet
        idempotency = request.idempotency_key or _idempotency_field(request.body)
        others: list[Task] = []
        for number, spec in enumerate(specs[1:], start=1):
            others.append(
                await service.create_task(
                    key,
                    spec,
                    request.client_ip,
                    retention_seconds=dialect.RETENTION_SECONDS,
                    idempotency_key=idempotency and f"{idempotency}#{number}",
                )
            )
        first = await service.create_task(
            key,
            groups.grouped(specs[0], [t.id for t in others]),
            request.client_ip,
            retention_seconds=dialect.RETENTION_SECONDS,
            idempotency_key=idempotency,
        )
        tasks = [first, *others]
        if specs[0].type in dialect.SYNC_TYPES:
            tasks = await wait_all(tasks, settings.sync_wait_seconds)
        return Response(groups.render_group(tasks[0], tasks[1:]))

    async def wait_all(tasks: list[Task], seconds: float) -> list[Task]:
        deadline = time.monotonic() + seconds
        return [
            await service.wait_until_final(t, max(0.0, deadline - time.monotonic())) for t in tasks
        ]

    async def get_task_result(request: Request) -> Response:
        client_key, task_id = dialect.parse_result(request.body)
        key = await service.authenticate(client_key, request.client_ip)
        task = await service.get_result(key, task_id)
        wait = min(_wait_seconds(request.body), settings.max_wait_seconds)
        speaker, groups = dialect, own_groups
        if origin is not None:
            other_speaker = origin(task)
            if other_speaker is not None:
                speaker, groups = other_speaker, _groups_of(other_speaker)
        others = groups.group_of(task) if groups is not None else []
        if not others and wait <= 0:  # Almost every poll: one task, answered as it stands.
            return Response(speaker.render_result(task))
        tasks = [task, *[await service.get_result(key, other) for other in others]]
        if wait > 0:
            tasks = await wait_all(tasks, wait)
        if groups is not None and others:
            return Response(groups.render_group(tasks[0], tasks[1:]))
        return Response(speaker.render_result(tasks[0]))

    async def get_balance(request: Request) -> Response:
        key = await service.authenticate(dialect.parse_balance(request.body), request.client_ip)
        return Response(dialect.render_balance(await service.balance(key)))

    def report(verdict: bool | None) -> Handler:
        async def handler(request: Request) -> Response:
            parsed = dialect.parse_report(request.body, verdict)
            key = await service.authenticate(parsed.client_key, request.client_ip)
            task = await service.report(key, parsed.task_id, parsed.correct)
            return Response(dialect.render_reported(task))

        return handler

    handlers: dict[str, Handler] = {
        "createTask": create_task,
        "getTaskResult": get_task_result,
        "getBalance": get_balance,
    }
    for name, verdict in dialect.REPORT_PATHS.items():
        handlers[name] = report(verdict)
    if isinstance(dialect, StatsDialect):
        handlers.update(stats_handlers(service, dialect))

    on_error = _error_renderer(dialect)

    def render(request: Request, error: CapgateError) -> Response:
        if error.code is ErrorCode.NO_SUCH_METHOD:
            wrong = on_error(error)
            return Response(wrong.body, status=405, content_type=wrong.content_type)
        return on_error(error)

    return {
        name: guarded(handler, render, label=label, metrics=service.metrics, method="POST")
        for name, handler in handlers.items()
    }


def stats_handlers(service: Service, dialect: StatsDialect) -> dict[str, Handler]:
    """Anti-Captcha's getQueueStats (no key needed, as documented) and getSpendingStats."""

    async def get_queue_stats(request: Request) -> Response:
        task_type = dialect.parse_queue_stats(request.body)
        return Response(dialect.render_queue_stats(await service.queue_stats(task_type)))

    async def get_spending_stats(request: Request) -> Response:
        query = dialect.parse_spending_stats(request.body)
        key = await service.authenticate(query.client_key, request.client_ip)
        records = await service.spending_stats(
            key, query.start, query.types, query.soft_id, query.ip
        )
        return Response(dialect.render_spending_stats(records))

    return {"getQueueStats": get_queue_stats, "getSpendingStats": get_spending_stats}
