"""This node's copies of tasks, kept in step with Redis by its invalidation messages.

A poll is the most frequent request there is, and reading a task from Redis costs a round
trip (two system calls, the pipeline, the parse) where the answer usually has not changed.
Redis' client-side caching support tells a client when keys change: one connection here
turns on tracking in broadcast mode for every task key, redirected to itself, and
subscribes to `__redis__:invalidate`. From then on every write to any task, by any node,
sends that task's key down this connection, and the copy here is dropped.

Copies are served only while that connection is up: when it fails, every copy is dropped
and none is kept until it is back. A read that races a write is never kept: a fetch leaves
its future in `_fetching`, an invalidation of the task removes it, and the fetched task is
kept only if its future is still there. Polls of a task that is being fetched wait for
that fetch rather than start their own: under load a new poll arrives during every round
trip, and when each replaced the last one's placeholder, no fetch ever came back to find
its own and the copy was seldom kept (a quarter of polls went to Redis). The node's own
writes drop their tasks at once (the message that Redis sends them comes a moment later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Any

import hiredis
import msgspec

from capgate.model import Task
from capgate.store.redis_pipe import login_commands, open_stream

log = logging.getLogger("capgate.store.redis")

_CHANNEL = b"__redis__:invalidate"
_CAPACITY = 4096  # copies kept (a task without its image is about 1 KB)
_RETRY_SECONDS = 0.5


class FetchAbandoned(Exception):
    """The fetch that a poll waited for did not finish; the poll reads for itself."""


class TrackedTasks:
    """Task copies valid while Redis' invalidation messages reach this node."""

    def __init__(
        self, prefix: str, connection: dict[str, Any], tls: ssl.SSLContext | None = None
    ) -> None:
        self._prefix = prefix.encode()  # e.g. b"{cg}:task:"
        # host and port, or path; username, password; TLS as redis-py's connections use it.
        self._connection = connection
        self._tls = tls
        self._tasks: dict[int, Task] = {}
        self._fetching: dict[int, asyncio.Future[Task | None]] = {}
        self._live = False
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def live(self) -> bool:
        """True while invalidations arrive, so copies may be served."""
        return self._live

    async def start(self, wait_seconds: float = 2.0) -> None:
        """Start listening; wait a moment for the subscription (serving works without)."""
        self._listener = asyncio.create_task(self._listen_forever(), name="capgate-tracking")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait_seconds)

    async def stop(self) -> None:
        """Stop listening and drop every copy."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self._go_dark()

    def get(self, task_id: int) -> Task | None:
        """A copy of the task as last read, if it is still current."""
        task = self._tasks.get(task_id)
        return None if task is None else msgspec.structs.replace(task)

    def in_flight(self, task_id: int) -> asyncio.Future[Task | None] | None:
        """The fetch of this task under way, if any, that no write has overtaken: its
        result is as current as a read of one's own would be."""
        return self._fetching.get(task_id)

    def fetching(self, task_id: int) -> asyncio.Future[Task | None] | None:
        """Before reading a task from Redis: a future for the result, which an
        invalidation of the task removes from `_fetching` (None while dark)."""
        if not self._live:
            return None
        fetch: asyncio.Future[Task | None] = asyncio.get_running_loop().create_future()
        self._fetching[task_id] = fetch
        return fetch

    def fetched(
        self, task_id: int, fetch: asyncio.Future[Task | None] | None, task: Task | None
    ) -> None:
        """After the read: answer those who waited, and keep the task if nothing changed
        it meanwhile."""
        if fetch is None:
            return
        # A copy of this module's own, which no caller changes: those who waited and the
        # next polls each get a copy of it.
        kept = None if task is None else msgspec.structs.replace(task)
        fetch.set_result(kept)
        if self._fetching.get(task_id) is not fetch:
            return
        del self._fetching[task_id]
        if kept is not None and self._live:
            if len(self._tasks) >= _CAPACITY:
                self._tasks.clear()
            self._tasks[task_id] = kept

    def abandoned(self, task_id: int, fetch: asyncio.Future[Task | None] | None) -> None:
        """The read failed or was cancelled: those who waited read for themselves."""
        if fetch is None:
            return
        fetch.set_exception(FetchAbandoned())
        fetch.exception()  # Retrieved: nobody need have waited.
        if self._fetching.get(task_id) is fetch:
            del self._fetching[task_id]

    def changed(self, task_ids: Iterable[int]) -> None:
        """These tasks were written: drop their copies."""
        for task_id in task_ids:
            self._tasks.pop(task_id, None)
            self._fetching.pop(task_id, None)

    def clear(self) -> None:
        """Drop every copy (many tasks changed at once)."""
        self._tasks.clear()
        self._fetching.clear()

    def _go_dark(self) -> None:
        self._live = False
        self._ready.clear()
        self.clear()

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._live:
                    log.warning("task change messages lost (%s); reading tasks from Redis", exc)
            self._go_dark()
            await asyncio.sleep(_RETRY_SECONDS)

    async def _listen(self) -> None:
        reader, writer = await self._open()
        parser = hiredis.Reader()

        async def call(*args: Any) -> Any:
            writer.write(hiredis.pack_command(args))
            return await _next_reply(reader, parser)

        try:
            for command in login_commands(self._connection):
                await call(*command)
            client_id = await call("CLIENT", "ID")
            await call(
                "CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", "PREFIX", self._prefix
            )
            await call("SUBSCRIBE", _CHANNEL)
            # Copies kept before this moment may have missed a message: start afresh.
            self.clear()
            self._live = True
            self._ready.set()
            while True:
                message = await _next_reply(reader, parser)
                if isinstance(message, list) and len(message) == 3 and message[1] == _CHANNEL:
                    self._invalidate(message[2])
        finally:
            writer.close()

    def _invalidate(self, keys: list[bytes] | None) -> None:
        if keys is None:  # FLUSHALL / FLUSHDB: everything changed.
            self.clear()
            return
        start = len(self._prefix)
        self.changed(
            int(key[start:])
            for key in keys
            if key.startswith(self._prefix) and key[start:].isdigit()
        )

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # Streams over the same connection the shared one opens (TCP, TLS or Unix socket).
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = await open_stream(self._connection, protocol, self._tls)
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def _next_reply(reader: asyncio.StreamReader, parser: hiredis.Reader) -> Any:
    """The next whole RESP2 reply; an error reply raises."""
    while True:
        reply = parser.gets()
        if reply is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise reply
            return reply
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("Redis closed the connection")
        parser.feed(data)
