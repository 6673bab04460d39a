"""A thin HTTP layer over raw ASGI: a request with its whole body, and a response.

The hot routes do not go through a framework: on this machine a framework costs more than
the rest of the request (see PERF.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

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


class Request(msgspec.Struct):
    """One HTTP request with its body read in full."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client_ip: str

    def header(self, name: bytes) -> bytes | None:
        """The first header of this (lower-case) name, if any."""
        for key, value in self.headers:
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
