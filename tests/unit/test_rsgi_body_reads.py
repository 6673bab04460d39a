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

from capgate.api.app import App
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
