"""One pipelined connection to Redis that every request of a node shares, for the hot
commands: a poll's read of a task, and a create.

redis-py spends tens of microseconds of Python on each command, even inside a pipeline
(its command stack, its connection checkout, its response callbacks): about a seventh of a
createTask's server time went there. This connection is a bare asyncio protocol instead.
The commands issued in one event-loop turn are packed by hiredis and written in one go;
hiredis parses the replies, which answer the commands in the order they were sent (Redis
answers a connection's commands in order). It is not a transaction: each command, each
script, stays atomic alone, as in a redis-py pipeline.

When the connection fails, every command waiting on it fails with redis-py's
ConnectionError (the request gets a temporary error); the next command connects again.
A command is never sent twice: a script whose answer was lost may have run.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError


def login_commands(connection: dict[str, Any]) -> list[tuple[Any, ...]]:
    """AUTH from redis-py's connection settings, as a list of commands (maybe empty)."""
    if connection.get("password"):
        if connection.get("username"):
            return [("AUTH", connection["username"], connection["password"])]
        return [("AUTH", connection["password"])]
    return []


async def open_stream(
    connection: dict[str, Any], protocol: asyncio.Protocol, tls: ssl.SSLContext | None
) -> asyncio.Transport:
    """A TCP (maybe TLS) or Unix-socket connection, as redis-py's settings describe it."""
    loop = asyncio.get_running_loop()
    if connection.get("path"):
        transport, _ = await loop.create_unix_connection(lambda: protocol, connection["path"])
    else:
        host, port = connection.get("host", "localhost"), connection.get("port", 6379)
        transport, _ = await loop.create_connection(lambda: protocol, host, port, ssl=tls)
    return transport


def tls_context(connection_class: type[Any], connection: dict[str, Any]) -> ssl.SSLContext | None:
    """The TLS context redis-py's own connections use for a rediss:// URL (None for redis://
    and unix://): its certificate and verification settings, built by redis-py itself."""
    settings = getattr(connection_class(**connection), "ssl_context", None)
    return None if settings is None else cast(ssl.SSLContext, settings.get())


class SharedConnection(asyncio.Protocol):
    """Commands from any coroutine, pipelined on one connection."""

    def __init__(self, connection: dict[str, Any], tls: ssl.SSLContext | None) -> None:
        self._connection = connection  # redis-py's connection settings
        self._tls = tls
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._outgoing: list[bytes] = []

    async def call(self, *args: Any) -> Any:
        """Send one command (with the others of this event-loop turn) and wait for its
        reply; an error reply raises redis-py's exception for it."""
        if self._transport is None:
            await self._connect()
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send(hiredis.pack_command(args), answer)
        return await answer

    def close(self) -> None:
        """Drop the connection; commands waiting on it fail."""
        if self._transport is not None:
            self._transport.close()

    # --- sending ----------------------------------------------------------------------

    def _send(self, packed: bytes, answer: asyncio.Future[Any]) -> None:
        self._waiting.append(answer)
        self._outgoing.append(packed)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and outgoing:
            self._transport.write(b"".join(outgoing))

    async def _connect(self) -> None:
        # One coroutine connects; the others wait for it.
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> None:
        try:
            transport = await open_stream(self._connection, self, self._tls)
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        self._transport = transport
        handshake = [*login_commands(self._connection)]
        if self._connection.get("db"):
            handshake.append(("SELECT", self._connection["db"]))
        answers = []
        for command in handshake:
            answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._send(hiredis.pack_command(command), answer)
            answers.append(answer)
        try:
            for answer in answers:
                await answer
        except BaseException:
            transport.close()
            raise

    # --- receiving --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self._waiting
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError:  # Not Redis, or a broken stream: start afresh.
                if self._transport is not None:
                    self._transport.close()
                return
            if reply is False:
                return
            answer = waiting.popleft()
            if answer.done():  # Its caller went away; the reply is still consumed.
                continue
            if isinstance(reply, hiredis.ReplyError):
                answer.set_exception(_error(str(reply)))
            else:
                answer.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._reader = hiredis.Reader()
        self._outgoing.clear()
        waiting, self._waiting = self._waiting, collections.deque()
        lost = RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}")
        for answer in waiting:
            if not answer.done():
                answer.set_exception(lost)


def _error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)
