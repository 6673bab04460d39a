"""The ASGI application: lifespan (store, solvers, dispatcher, sweep) and the route table."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable

import msgspec

from capgate.api.admin_routes import mount_admin
from capgate.api.http import (
    JSON,
    BodyTooLarge,
    ClientGone,
    Receive,
    Request,
    Response,
    Scope,
    Send,
    read_body,
    send_response,
)
from capgate.api.json_routes import mount_json_dialect, mount_root
from capgate.api.legacy_routes import mount_twocaptcha_legacy
from capgate.api.openapi import DOCUMENTS
from capgate.api.rest_routes import mount_ucaptcha
from capgate.api.routing import Handler, Route, Routes
from capgate.api.worker_routes import mount_workers
from capgate.callbacks import Deliverer, load_secret
from capgate.clock import Clock, OffsetClock
from capgate.config import Settings
from capgate.dialects import JSON_DIALECTS, JSON_PREFIXES, anticaptcha
from capgate.dispatch import Dispatcher
from capgate.keys import admin_key
from capgate.learning.loop import Learning
from capgate.learning.report import gather_sites
from capgate.learning.served import ServedModels
from capgate.logs import request_id
from capgate.metrics import site_metrics
from capgate.model import CapgateError, ErrorCode, Task
from capgate.router import Router
from capgate.service import Service
from capgate.solvers.base import Solver
from capgate.solvers.testkeys import TestKeysSolver
from capgate.store import Store, store_from_url

log = logging.getLogger("capgate.api")

# How often counted result polls are written to the store (capgate.polls).
POLL_FLUSH_SECONDS = 0.2
# Request ids made here: a random prefix per process and a counter (a random id per
# request cost a system call on the hot path).
_ID_PREFIX = secrets.token_hex(4) + "-"
_request_numbers = itertools.count(1)


def app_from_environment() -> App:
    """The app a server process builds from CAPGATE_* variables (`serve --workers N`)."""
    import os
    from pathlib import Path

    from capgate.clock import SystemClock
    from capgate.config import load_settings

    config = os.environ.get("CAPGATE_CONFIG")
    return App(load_settings(Path(config) if config else None), SystemClock())


def default_solvers(
    settings: Settings,
    served: ServedModels | None = None,
    site_of: Callable[[Task], Awaitable[str | None]] | None = None,
) -> list[Solver]:
    """The solvers a node runs, in priority order: test keys, local OCR, then providers.

    `served`: the registry's models, which the OCR solver reads with (and `site_of` names
    each task's site for)."""
    solvers: list[Solver] = [TestKeysSolver()] if settings.test_keys else []
    if settings.ocr:
        from capgate.solvers.ocr import OcrSolver

        solvers.append(
            OcrSolver(
                settings.ocr_processes,
                settings.ocr_model_path,
                settings.ocr_engines,
                served=served,
                site_of=site_of,
            )
        )
    if settings.providers:
        from capgate.providers.upstream import UpstreamProvider

        solvers += [UpstreamProvider(provider) for provider in settings.providers]
    return solvers


class App:
    """capgate's ASGI application."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        store: Store | None = None,
        solvers: list[Solver] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.store = store or store_from_url(
            settings.store,
            settings.data,
            server_time=not settings.test_clock,
            durability=settings.durability,
        )
        # The registry's models, followed by every node that solves (docs/learning.md).
        self.served = ServedModels(
            self.store, settings.data / "ocr" / "registry", settings.model_poll_seconds
        )
        self.solvers = (
            default_solvers(settings, self.served, lambda task: self.learning.site_of(task))
            if solvers is None
            else solvers
        )
        self.router = Router(
            self.solvers, settings.breaker_failures, settings.breaker_cooldown_seconds
        )
        self.learning = Learning(self.store, self.router, settings, clock, self.served)
        self.dispatcher: Dispatcher | None = None
        self.service = Service(
            self.store, self.router, settings, clock, on_created=lambda _task: self._wake()
        )
        self.service.learning = self.learning
        self.routes = Routes()
        # The Anti-Captcha family at the root (CLIENTS.md: only this shape may live there,
        # unless a key chose another dialect), and every JSON dialect under its own prefix.
        mount_root(self.routes, self.service, settings, anticaptcha, JSON_DIALECTS)
        for prefix, dialect in JSON_PREFIXES.items():
            mount_json_dialect(self.routes, self.service, settings, prefix, dialect)
        mount_ucaptcha(self.routes, self.service, settings.max_wait_seconds)
        mount_twocaptcha_legacy(self.routes, self.service)
        mount_workers(self.routes, self.service)
        mount_admin(
            self.routes,
            self.store,
            self.router,
            clock,
            admin_key(settings.admin_key, settings.data),
            data=settings.data,  # where a dashboard logout is kept for every process
        )
        self.routes.add("/healthz", Route(self._healthz, _plain_error))
        self.routes.add("/metrics", Route(self._metrics, _plain_error))
        for name, document in DOCUMENTS.items():
            self.routes.add(
                f"/openapi/{name}.json",
                Route(_static(msgspec.json.encode(document)), _plain_error),
            )
        if settings.test_clock:
            self.routes.add("/_test/clock", Route(self._advance_clock, _plain_error))
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._poll_flusher: asyncio.Task[None] | None = None

    # --- lifespan ---------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the store, start the solvers, the dispatcher and the sweep."""
        await self.store.open()
        self.service.deliverer = Deliverer(
            load_secret(self.settings.data), self.settings.callback_networks
        )
        if self.settings.local_solving:
            await self.served.start()
            for solver in self.solvers:
                await solver.start()
            self.learning.start()
            self.dispatcher = Dispatcher(
                self.store,
                self.router,
                self.settings,
                self.clock,
                on_finished=self._task_finished,
                capacity=16 + sum(p.max_concurrent for p in self.settings.providers),
                labels=self.service.labels,
                learning=self.learning,
            )
            self.dispatcher.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="capgate-sweep")
        self._poll_flusher = asyncio.create_task(self._flush_polls_forever(), name="capgate-polls")
        # What startup built (modules, the app, the solvers) lives as long as the process:
        # keep the garbage collector from walking it again on every full collection.
        gc.freeze()

    async def shutdown(self) -> None:
        """Stop background work, write the counted polls and close the store."""
        self._stopping = True
        for job in (self._sweeper, self._poll_flusher):
            if job is not None:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await job
        with contextlib.suppress(Exception):
            await self.service.polls.flush()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.learning.stop()
        await self.served.stop()
        if self.service.deliverer is not None:
            await self.service.deliverer.stop()
        if self.settings.local_solving:
            for solver in self.solvers:
                await solver.stop()
        await self.store.close()

    def _task_finished(self, task_id: int) -> None:
        # The dispatcher calls this synchronously; counting needs a store read.
        self.service.in_background(self.service.task_finished(task_id))

    def _wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    # Both loops also end on `_stopping`, set before they are cancelled: redis-py can
    # swallow a cancellation that lands inside a command, and shutdown waits for them.
    async def _flush_polls_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(POLL_FLUSH_SECONDS)
            try:
                await self.service.polls.flush()
            except Exception:
                log.exception("could not write poll counts; keeping them for the next try")

    async def _sweep_forever(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.sweep_interval_seconds)
            try:
                await self.service.maintain()
            except Exception:
                log.exception("maintenance pass failed; trying again next interval")

    # --- ASGI -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, route = self.route(scope["path"])
        if route is None:
            await send_response(send, not_found(path))
            return
        try:
            body = await read_body(receive, self.settings.max_request_bytes)
        except ClientGone:
            return
        except BodyTooLarge:
            await send_response(send, self.too_large(route))
            return
        begin_request(_header(scope, b"x-request-id"))
        client = scope.get("client")
        request = Request(
            scope["method"],
            path,
            scope.get("query_string", b""),
            scope.get("headers", []),
            body,
            client[0] if client else "",
        )
        await send_response(send, await route.handler(request))

    # --- what both servers share (this ASGI app, and capgate.api.rsgi) ---------------

    def route(self, path: str) -> tuple[str, Route | None]:
        """The route serving a request path (a trailing slash ignored), and that path."""
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        return path, self.routes.find(path)

    def too_large(self, route: Route) -> Response:
        """The route's answer to a body over max_request_bytes."""
        limit = self.settings.max_request_bytes
        error = CapgateError(
            ErrorCode.REQUEST_TOO_LARGE, f"The request body is larger than {limit} bytes"
        )
        return route.on_error(error)

    # --- operational routes -----------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}')

    async def _metrics(self, request: Request) -> Response:
        wanted = self.settings.metrics_key
        if wanted:
            given = request.header(b"authorization") or b""
            if not hmac.compare_digest(given, b"Bearer " + wanted.encode()):
                return Response(
                    b'{"error":"/metrics needs the header Authorization: Bearer <metrics_key>"}',
                    status=401,
                    headers=[(b"www-authenticate", b'Bearer realm="capgate metrics"')],
                )
        gauges: dict[str, tuple[str, float]] = {}
        try:
            depth = await self.store.queue_depth()
            gauges["capgate_queue_depth"] = ("Tasks waiting in the queue", float(depth))
        except Exception as exc:
            # The store is down (Redis stopped): this process's own figures still answer.
            log.warning("metrics without the queue depth: %s", exc)
        body = self.service.metrics.render(gauges, self.router)
        try:
            body += site_metrics(await gather_sites(self.store, history=0), self.served)
        except Exception as exc:
            log.warning("metrics without the sites: %s", exc)
        return Response(body, content_type=b"text/plain; version=0.0.4; charset=utf-8")

    async def _advance_clock(self, request: Request) -> Response:
        # Test-only: move the clock, then run the housekeeping a real wait would have run.
        try:
            seconds = float(msgspec.json.decode(request.body)["advance"])
        except (msgspec.DecodeError, RecursionError, KeyError, TypeError, ValueError):
            return Response(b'{"error":"send {\\"advance\\": seconds}"}', status=400)
        assert isinstance(self.clock, OffsetClock)
        now = self.clock.advance(seconds)
        await self.service.maintain()
        return Response(msgspec.json.encode({"now": now}))


def begin_request(sent_id: str) -> None:
    """Name the request in this context's logs: the client's X-Request-Id (64 characters
    at most), else one made here."""
    request_id.set(sent_id[:64] if sent_id else f"{_ID_PREFIX}{next(_request_numbers):x}")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _static(body: bytes) -> Handler:
    async def handler(request: Request) -> Response:
        return Response(body)

    return handler


def _plain_error(error: CapgateError) -> Response:
    return Response(msgspec.json.encode({"error": error.description}), status=400)


def not_found(path: str) -> Response:
    error = CapgateError(ErrorCode.NO_SUCH_METHOD, f"There is no method at {path}")
    return Response(anticaptcha.render_error(error), status=404, content_type=JSON)
