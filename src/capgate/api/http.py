"""A thin HTTP layer over raw ASGI: a request with its whole body, and a response; and
the connection protocol that reads requests off the wire for uvicorn.

The hot routes do not go through a framework: on this machine a framework costs more than
the rest of the request (see PERF.md).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from capgate.config import Settings, load_settings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"


class BodyTooLarge(Exception):
    """The request body passed the configured limit while it was being read."""


class ClientGone(Exception):
    """The client disconnected before the request body was complete."""


class Request:
    """One HTTP request with its body read in full.

    A plain class, not a struct: the RSGI server's requests (capgate.api.rsgi) read their
    headers from the server only when a handler asks for one.
    """

    __slots__ = ("_headers", "body", "client_ip", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client_ip: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self._headers = headers
        self.body = body
        self.client_ip = client_ip

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Every header as (lower-case name, value), in the order sent."""
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        """The first header of this (lower-case) name, if any."""
        for key, value in self._headers:
            if key == name:
                return value
        return None

    @property
    def idempotency_key(self) -> str | None:
        """The client's Idempotency-Key header, if it sent one."""
        value = self.header(b"idempotency-key")
        return value.decode("latin-1") if value else None


class Response(msgspec.Struct):
    """An HTTP response: status, body, content type and any further headers."""

    body: bytes
    status: int = 200
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = []


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the request body as it streams in, stopping as soon as it passes `limit`.

    Content-Length is not trusted: the bytes are counted as they arrive.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(send: Send, response: Response) -> None:
    """Write a whole response."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (b"content-type", response.content_type),
                (b"content-length", str(len(response.body)).encode()),
                *response.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body})


class ReadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the two bounds on reading a request it lacks.

    A request must arrive whole, headers and body, within `read_timeout` seconds of its
    first byte (the first one, of the connection): a client that sends half a request and
    waits would otherwise hold its connection forever. And its headers may hold at most
    `max_header_bytes`, which httptools does not limit. Either way the client gets a 408
    or 431 where no response is under way, and the connection is closed. While the app
    works on a whole request no deadline runs; once it answered, uvicorn's keep-alive
    timeout closes an idle connection.
    """

    # Set by `capgate serve` (configure); a process it spawned (--workers) reads its
    # settings back from the environment, as the app does (app_from_environment).
    read_timeout: ClassVar[float] = 0.0
    max_header_bytes: ClassVar[int] = 0

    @classmethod
    def configure(cls, settings: Settings) -> None:
        """Take the bounds from the settings, for every connection of this process."""
        cls.read_timeout = settings.request_read_timeout_seconds
        cls.max_header_bytes = settings.max_request_bytes

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not ReadDeadlineProtocol.read_timeout:
            path = os.environ.get("CAPGATE_CONFIG")
            ReadDeadlineProtocol.configure(load_settings(Path(path) if path else None))
        self._deadline: asyncio.TimerHandle | None = None
        self._reading = False  # Between a request's first byte and its last.
        self._in_body = False  # Its headers are complete.
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._header_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if not self._in_body and self._header_bytes > self.max_header_bytes:
            self._refuse(431, b"Request Header Fields Too Large")
        elif self._deadline is None and not self._reading and self._idle():
            self._arm()  # Bytes that began no request: the keep-alive timer is gone.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = True
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._in_body = True
        self._header_bytes = 0

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = self._in_body = False
        self._disarm()

    def _idle(self) -> bool:
        """No response is due or under way on this connection."""
        cycle = self.cycle
        return not self.pipeline and (cycle is None or cycle.response_complete)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self._refuse(408, b"Request Timeout")

    def _refuse(self, status: int, reason: bytes) -> None:
        """Answer `status` if this request may still be answered, then close."""
        cycle = self.cycle
        answerable = self._reading and (
            self._idle()
            if not self._in_body
            else (not self.pipeline and cycle is not None and not cycle.response_started)
        )
        if answerable:
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, reason, len(reason), reason)
            )
        self.transport.close()
