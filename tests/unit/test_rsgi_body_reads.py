"""How capgate.api.rsgi ends a request whose body read does not complete: granian's read
cancelled under it (the client went away), the request's own task cancelled (shutdown),
or the read refused (closed, protocol error). Driven with a stand-in for granian's
protocol object, since granian cancels a read only under load (seen when wrk stops)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from granian._granian import RSGIProtocolClosed

from capgate.api import rsgi as rsgi_module
from capgate.api.app import App
from capgate.api.http import Request, Response
from capgate.api.routing import Route
from capgate.api.rsgi import RsgiApp
from capgate.clock import SystemClock
from capgate.config import Settings


class Scope:
    proto = "http"
    method = "POST"
    path = "/createTask"
    query_string = ""
    client = "127.0.0.1:5000"

    def __init__(self) -> None:
        self.headers = {"content-length": "100", "content-type": "application/json"}


class Proto:
    """Hands out `read` as the body read and keeps every answer written."""

    def __init__(self, read: Callable[[], Awaitable[bytes]]) -> None:
        self.read = read
        self.answers: list[tuple[int, list[tuple[str, str]], bytes]] = []

    def __call__(self) -> Awaitable[bytes]:
        return self.read()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))


@pytest.fixture
def rsgi(tmp_path: Path) -> RsgiApp:
    return RsgiApp(App(Settings(data=tmp_path, store="memory"), SystemClock()))


def serve(rsgi: RsgiApp, proto: Proto) -> Any:
    async def run() -> None:
        rsgi.deadlines.start()
        try:
            await rsgi.__rsgi__(Scope(), proto)  # type: ignore[arg-type]
        finally:
            await rsgi.deadlines.stop()

    return asyncio.run(run())


def test_a_read_granian_cancels_is_answered_400_not_raised(rsgi: RsgiApp) -> None:
    async def cancelled() -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        future.cancel()  # What granian does to a pending read when the connection goes.
        return await future

    proto = Proto(cancelled)
    serve(rsgi, proto)  # Returns: no CancelledError escapes to granian's logger.
    assert [status for status, _, _ in proto.answers] == [400]
    assert ("connection", "close") in proto.answers[0][1]
    assert rsgi.active == 0 and not rsgi.deadlines.reading


def test_a_request_cancelled_itself_is_still_cancelled(rsgi: RsgiApp) -> None:
    async def shutdown() -> bytes:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # The server cancels the request's task (shutdown).
        await asyncio.sleep(1)
        return b""

    proto = Proto(shutdown)
    with pytest.raises(asyncio.CancelledError):
        serve(rsgi, proto)
    assert proto.answers == []
    assert rsgi.active == 0


def test_a_read_of_a_closed_connection_is_answered_400(rsgi: RsgiApp) -> None:
    async def closed() -> bytes:
        raise RSGIProtocolClosed()

    proto = Proto(closed)
    serve(rsgi, proto)
    assert [status for status, _, _ in proto.answers] == [400]


def test_shutdown_lets_a_request_in_progress_end_before_the_app_stops(rsgi: RsgiApp) -> None:
    """granian's stop does not wait for every request in progress; RsgiApp.shutdown does
    (bounded), so that the store is not closed under one."""
    order: list[str] = []

    async def slow() -> bytes:
        await asyncio.sleep(0.3)
        order.append("body read")
        return b'{"clientKey": "nobody"}'

    proto = Proto(slow)

    async def run() -> None:
        await rsgi.startup()
        stop_app = rsgi.app.shutdown

        async def shutdown() -> None:
            order.append(f"app shutdown, {rsgi.active} in progress")
            await stop_app()

        rsgi.app.shutdown = shutdown  # type: ignore[method-assign]
        request = asyncio.create_task(rsgi.__rsgi__(Scope(), proto))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert rsgi.active == 1
        await rsgi.shutdown()
        await request

    asyncio.run(run())
    assert order == ["body read", "app shutdown, 0 in progress"]
    assert [status for status, _, _ in proto.answers] == [200]  # answered, in its dialect


def _waiting_route(rsgi: RsgiApp, started: asyncio.Event) -> None:
    """/wait: a handler that waits (as a long poll does) until it is cancelled."""

    async def waits(request: Request) -> Response:
        started.set()
        await asyncio.sleep(60)
        return Response(b"{}")

    rsgi._exact["/wait"] = Route(waits, lambda error: Response(b"{}"))


def _cancel_a_waiting_request(rsgi: RsgiApp) -> None:
    async def run() -> None:
        started = asyncio.Event()
        _waiting_route(rsgi, started)

        async def body() -> bytes:
            return b"{}"

        scope = Scope()
        scope.path = "/wait"
        rsgi.deadlines.start()
        try:
            request = asyncio.create_task(rsgi.__rsgi__(scope, Proto(body)))  # type: ignore[arg-type]
            await started.wait()
            request.cancel()
            await request
        finally:
            await rsgi.deadlines.stop()

    asyncio.run(run())


def test_a_request_cancelled_while_stopping_ends_quietly(rsgi: RsgiApp) -> None:
    """What granian does at stop to a request whose client has gone: cancel it. With the
    server stopping, the request ends without raising (granian would log a traceback)."""
    rsgi.stopping = True
    _cancel_a_waiting_request(rsgi)  # no CancelledError
    assert rsgi.active == 0


def test_a_request_cancelled_while_serving_is_still_cancelled(rsgi: RsgiApp) -> None:
    with pytest.raises(asyncio.CancelledError):
        _cancel_a_waiting_request(rsgi)
    assert rsgi.active == 0


def test_a_request_that_never_ends_holds_shutdown_no_longer_than_the_grace(
    rsgi: RsgiApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst a client can do to a stop (a request that waits on and on): the App's
    shutdown still runs, once SHUTDOWN_GRACE_SECONDS have passed."""
    monkeypatch.setattr(rsgi_module, "SHUTDOWN_GRACE_SECONDS", 0.2)
    seen: list[int] = []

    async def run() -> None:
        await rsgi.startup()
        started = asyncio.Event()
        _waiting_route(rsgi, started)
        stop_app = rsgi.app.shutdown

        async def shutdown() -> None:
            seen.append(rsgi.active)
            await stop_app()

        rsgi.app.shutdown = shutdown  # type: ignore[method-assign]

        async def body() -> bytes:
            return b"{}"

        scope = Scope()
        scope.path = "/wait"
        request = asyncio.create_task(rsgi.__rsgi__(scope, Proto(body)))  # type: ignore[arg-type]
        await started.wait()
        await asyncio.wait_for(rsgi.shutdown(), 30)  # returns, the request still waiting
        request.cancel()
        await request  # stopping: it ends quietly

    asyncio.run(run())
    assert seen == [1]  # the App stopped with the stuck request still in progress
    assert rsgi.active == 0
