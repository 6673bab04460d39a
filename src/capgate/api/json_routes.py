"""Routes of the createTask / getTaskResult family, for any JSON dialect module.

The glue between HTTP and the service: parse with the dialect, act through the service,
render with the dialect. Every failure is answered in the dialect's own error shape.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from capgate.api.http import Request, Response
from capgate.api.routing import ErrorRenderer, Handler, Route, Routes, guarded, post_only
from capgate.config import Settings
from capgate.dialects.base import JsonDialect
from capgate.model import CapgateError, ErrorCode
from capgate.service import Service

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
    default_handlers = json_handlers(service, settings, default, "root")
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


class _IdempotencyPeek(msgspec.Struct):
    idempotencyKey: Any = None


_idempotency_peek = msgspec.json.Decoder(_IdempotencyPeek)


def _idempotency_field(body: bytes) -> str | None:
    """The JSON dialects' `idempotencyKey` field, for clients that cannot set headers."""
    if b"idempotencyKey" not in body:  # Almost every request: skip decoding it again.
        return None
    try:
        value = _idempotency_peek.decode(body).idempotencyKey
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, str) and value else None


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


def _error_renderer(dialect: JsonDialect) -> ErrorRenderer:
    def on_error(error: CapgateError) -> Response:
        return Response(dialect.render_error(error))

    return on_error


def json_handlers(
    service: Service, settings: Settings, dialect: JsonDialect, label: str
) -> dict[str, Handler]:
    """Every method of a dialect, by name, each answering failures in the dialect's shape."""

    async def create_task(request: Request) -> Response:
        create = dialect.parse_create(request.body)
        key = await service.authenticate(create.client_key)
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

    async def get_task_result(request: Request) -> Response:
        client_key, task_id = dialect.parse_result(request.body)
        key = await service.authenticate(client_key)
        task = await service.get_result(key, task_id)
        wait = _wait_seconds(request.body)
        if wait > 0:
            task = await service.wait_until_final(task, min(wait, settings.max_wait_seconds))
        return Response(dialect.render_result(task))

    async def get_balance(request: Request) -> Response:
        key = await service.authenticate(dialect.parse_balance(request.body))
        return Response(dialect.render_balance(await service.balance(key)))

    def report(verdict: bool | None) -> Handler:
        async def handler(request: Request) -> Response:
            parsed = dialect.parse_report(request.body, verdict)
            key = await service.authenticate(parsed.client_key)
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

    on_error = _error_renderer(dialect)

    def render(request: Request, error: CapgateError) -> Response:
        if error.code is ErrorCode.NO_SUCH_METHOD:
            wrong = on_error(error)
            return Response(wrong.body, status=405, content_type=wrong.content_type)
        return on_error(error)

    return {
        name: guarded(post_only(handler), render, label=label, metrics=service.metrics)
        for name, handler in handlers.items()
    }
