"""capgate served by granian through its RSGI interface (the default of `capgate serve`).

Under ASGI every request is a scope dict, a receive call per body message and two send
messages, all built and parsed in Python; RSGI hands the app the request's scope as an
object, its whole body in one call and takes the response in one call. On one core that
difference alone is worth more than the rest of a getTaskResult (see PERF.md), so this
module serves capgate's routes straight from RSGI, each through the same route table,
handlers and error dialects as the ASGI app (capgate.api.app, still served by uvicorn with
`serve --server uvicorn`): every route of capgate is a Request -> Response handler, so the
dashboard, admin and worker routes take this path too, and no framework sits behind it.

What uvicorn and ReadDeadlineProtocol did for the ASGI app, and who does it here:

- the request body is bounded by `max_request_bytes`: a larger Content-Length is refused
  before a byte of the body is read, a chunked body while it streams in (here);
- a request's headers must arrive within min(`request_read_timeout_seconds`,
  `keep_alive_seconds`) of the connection's start or of the previous answer, and may hold
  at most `max_request_bytes` (granian: `http1_header_read_timeout`, which also closes an
  idle kept-alive connection, and `http1_buffer_size`, else 431);
- its body must arrive within `request_read_timeout_seconds` of its headers, else 408 and
  the connection is closed (here: `_Deadlines`);
- past `max_connections` requests in progress in one process, the next is answered 503
  (here), as uvicorn's `limit_concurrency` does; granian's `backpressure`, set to twice
  that, holds further requests (not connections) until one ends, so that the app sees and
  refuses the ones past the limit. What granian cannot do is count *idle* connections:
  uvicorn answered 503 to a new request once `max_connections` connections were open,
  idle ones included; under granian an idle connection instead lasts at most
  min(`request_read_timeout_seconds`, `keep_alive_seconds`) (docs/configuration.md);
- X-Forwarded-For is believed from the addresses in FORWARDED_ALLOW_IPS (default
  127.0.0.1 and ::1), exactly as uvicorn's proxy-headers middleware does (here).

Lifespan: `serve()` opens the store and starts the solvers (App.startup) before it listens,
and stops them (App.shutdown) after the server stopped and the requests in progress ended
(at most SHUTDOWN_GRACE_SECONDS), as uvicorn's lifespan does. granian's stop cancels the
requests whose client has gone; those end quietly, not with a traceback each (with one
process: `--workers N` workers get the signal from granian, not from `serve()`, so there a
cancelled request still logs one). With `--workers N` each granian worker process starts
and stops the App in `__rsgi_init__` and `__rsgi_del__` (`worker_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian._granian import RSGIProtocolError as ProtocolError
from granian.rsgi import Scope

from capgate.api.app import App, begin_request, not_found
from capgate.api.http import JSON, Request, Response
from capgate.config import Settings

log = logging.getLogger("capgate.api")

# Response headers as RSGI takes them (str pairs), built once for the usual content types.
_CONTENT_TYPES: dict[bytes, list[tuple[str, str]]] = {}
_CLOSE = ("connection", "close")
_PLAIN = ("content-type", "text/plain; charset=utf-8")
# How long, at shutdown, the requests still in progress may take to end before the store
# closes under them (uvicorn waits for them too).
SHUTDOWN_GRACE_SECONDS = 5.0


class RsgiRequest(Request):
    """A request whose headers stay in granian's header map until a handler asks."""

    __slots__ = ("_converted", "_source")

    def __init__(
        self,
        method: str,
        path: str,
        query: bytes,
        source: Any,  # granian's RSGIHeaders
        body: bytes,
        client_ip: str,
    ) -> None:
        super().__init__(method, path, query, [], body, client_ip)
        self._source = source
        self._converted = False

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        if not self._converted:
            self._headers = [(_bytes(k), _bytes(v)) for k, v in self._source.items()]
            self._converted = True
        return self._headers

    def header(self, name: bytes) -> bytes | None:
        value = self._source.get(name.decode("latin-1"))
        return None if value is None else _bytes(value)


def _bytes(text: str) -> bytes:
    # granian passes on only header values of visible ASCII; latin-1 is the HTTP default.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


class TrustedProxies:
    """The addresses whose X-Forwarded-For is believed: FORWARDED_ALLOW_IPS, as uvicorn
    reads it (comma-separated addresses, networks, or `*`; default 127.0.0.1 and ::1)."""

    def __init__(self, spec: str) -> None:
        hosts = [item.strip() for item in spec.split(",") if item.strip()]
        self.everyone = "*" in hosts
        self.literals: set[str] = set()
        self.addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for host in hosts:
            try:
                if "/" in host:
                    self.networks.append(ipaddress.ip_network(host))
                else:
                    self.addresses.add(ipaddress.ip_address(host))
            except ValueError:
                self.literals.add(host)
        self._known: dict[str, bool] = {}

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        known = self._known.get(host)
        if known is None:
            try:
                address = ipaddress.ip_address(host)
                known = address in self.addresses or any(address in n for n in self.networks)
            except ValueError:
                known = host in self.literals
            if len(self._known) >= 4096:
                self._known.clear()
            if len(host) <= 253:
                self._known[host] = known
        return known

    def client(self, forwarded_for: str) -> str:
        """The client a chain of proxies names: the last address not trusted (the first
        of the chain when every one is), as uvicorn picks it."""
        hosts = [_host_of(item.strip()) for item in forwarded_for.split(",")]
        if self.everyone:
            return hosts[0]
        for host in reversed(hosts):
            if host not in self:
                return host
        return hosts[0]


def _host_of(value: str) -> str:
    """The host of `host`, `host:port` or `[v6]:port` (as uvicorn parses them)."""
    if value.startswith("["):
        end = value.find("]")
        return value if end == -1 else value[1:end] if value[end + 1 :][:1] in ("", ":") else value
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host if port.isdigit() else value
    return value


class _Deadlines:
    """Bodies being read, and when each must have arrived; one check every quarter of a
    second (at most) cancels the read of any that is late, cheaper than a timer per request.
    A deadline counts from the clock of the last check, so a body gets its
    `request_read_timeout_seconds` less one step at worst."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.now = 0.0  # The loop's clock as of the last check (a step behind at most).
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._watcher is None:
            self.now = asyncio.get_running_loop().time()
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="capgate-read-deadlines"
            )

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        step = min(0.25, self.seconds / 4)
        while True:
            await asyncio.sleep(step)
            self.now = now = loop.time()
            late = [task for task, deadline in self.reading.items() if deadline <= now]
            for task in late:
                del self.reading[task]
                self.expired.add(task)
                task.cancel()


class RsgiApp:
    """capgate's routes as an RSGI application (granian's `__rsgi__` protocol)."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.limit = settings.max_request_bytes
        self.deadlines = _Deadlines(settings.request_read_timeout_seconds)
        self.proxies = TrustedProxies(os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))
        self._exact = app.routes.exact
        self._hosts: dict[str, str] = {}  # Client `host:port` -> host, for kept-alive ones.
        self.active = 0  # Requests in progress.
        self.max_active = settings.max_connections
        self.stopping = False  # Set when the server is told to stop.

    async def startup(self) -> None:
        """What the ASGI lifespan's startup does, and the read deadlines' watch."""
        await self.app.startup()
        self.deadlines.start()

    async def shutdown(self) -> None:
        """What the ASGI lifespan's shutdown does, once the requests in progress have
        ended (at most SHUTDOWN_GRACE_SECONDS): granian's stop does not wait for those
        whose client has gone, and a store closed under them fails them."""
        self.stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE_SECONDS
        # Polled, once, at shutdown: an Event would cost every request a check.
        while self.active and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await self.deadlines.stop()
        await self.app.shutdown()

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        if scope.proto != "http":  # Websockets are off; nothing else is served.
            return
        # Past max_connections requests in progress, a 503 as uvicorn's limit_concurrency
        # answers it (granian cannot count idle connections: see the module doc).
        if self.active >= self.max_active:
            proto.response_bytes(503, [_PLAIN, _CLOSE], b"Service Unavailable")
            return
        self.active += 1
        try:  # One coroutine for the whole request: each frame more costs on the hot path.
            # Percent-decoded and read as UTF-8 by granian (bad bytes replaced), as uvicorn.
            path = scope.path
            route = self._exact.get(path)
            if route is None:
                path, route = self.app.route(path)
                if route is None:
                    _send(proto, not_found(path))
                    return
            headers = scope.headers
            length = headers.get("content-length")
            body = b""
            # Without Content-Length or Transfer-Encoding a request has no body (RFC 9112).
            if length != "0" and (length is not None or "transfer-encoding" in headers):
                if length is not None and not (length.isascii() and length.isdigit()):
                    # Not a length (granian should have refused it; never a 500 here).
                    proto.response_bytes(400, [_PLAIN, _CLOSE], b"Bad Request")
                    return
                if length is not None and (len(length) > 18 or int(length) > self.limit):
                    # Refused before reading: no body of that size is taken.
                    _send(proto, self.app.too_large(route), close=True)
                    return
                task = asyncio.current_task()
                assert task is not None
                deadlines = self.deadlines
                deadlines.reading[task] = deadlines.now + deadlines.seconds
                try:
                    # With a Content-Length granian delivers exactly that many bytes.
                    body = await proto() if length is not None else await self._stream(proto)
                except asyncio.CancelledError:
                    if task in deadlines.expired:
                        deadlines.expired.discard(task)
                        task.uncancel()
                        proto.response_bytes(408, [_PLAIN, _CLOSE], b"Request Timeout")
                        return
                    if task.cancelling():  # This request is being cancelled (shutdown).
                        raise
                    # granian cancelled the read itself: the connection went away while
                    # the body was on its way (seen when a load generator stops). Answered
                    # as a body cut short (below), never with a traceback, which would let
                    # any client fill the log, one line per connection.
                    proto.response_bytes(400, [_PLAIN, _CLOSE], b"Bad Request")
                    return
                except _TooLarge:
                    _send(proto, self.app.too_large(route), close=True)
                    return
                except (ProtocolClosed, ProtocolError):
                    # The client stopped sending (or went away) before its body was whole.
                    # Some answer must be given, or granian answers 500 for the app.
                    proto.response_bytes(400, [_PLAIN, _CLOSE], b"Bad Request")
                    return
                finally:
                    deadlines.reading.pop(task, None)
            begin_request(headers.get("x-request-id") or "")
            client = scope.client
            host = self._hosts.get(client)
            if host is None:
                host = _client_host(client)
                if len(self._hosts) >= 4096:
                    self._hosts.clear()
                self._hosts[client] = host
            if "x-forwarded-for" in headers and host in self.proxies:
                forwarded = [v for k, v in headers.items() if k == "x-forwarded-for"]
                named = self.proxies.client(", ".join(forwarded))
                if named:
                    host = named
            query = scope.query_string  # granian read its bytes as UTF-8: back to them.
            request = RsgiRequest(
                scope.method, path, query.encode() if query else b"", headers, body, host
            )
            try:
                response = await route.handler(request)
            except asyncio.CancelledError:
                if self.stopping:
                    # granian cancels, as it stops, the requests whose client has gone:
                    # nobody is left to answer, and granian would log a traceback each.
                    return
                raise
            _send(proto, response)
        finally:
            self.active -= 1

    async def _stream(self, proto: HTTPProtocol) -> bytes:
        """A chunked body, counted as it arrives and refused once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in proto:
            size += len(chunk)
            if size > self.limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def _client_host(client: str) -> str:
    """The address of granian's `host:port` (`[v6]:port`) client string."""
    return client[1 : client.find("]")] if client[:1] == "[" else client.rpartition(":")[0]


class _TooLarge(Exception):
    pass


def _send(proto: HTTPProtocol, response: Response, close: bool = False) -> None:
    """Write a whole response (granian adds its Content-Length)."""
    headers = _CONTENT_TYPES.get(response.content_type)
    if headers is None:
        headers = [("content-type", response.content_type.decode("latin-1"))]
        if len(_CONTENT_TYPES) < 64:
            _CONTENT_TYPES[response.content_type] = headers
    if response.headers or close:
        headers = [
            *headers,
            *((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers),
        ]
        if close:
            headers.append(_CLOSE)
    proto.response_bytes(response.status, headers, response.body)


_CONTENT_TYPES[JSON] = [("content-type", JSON.decode())]


# --- serving ------------------------------------------------------------------------------


def granian_options(settings: Settings) -> dict[str, Any]:
    """The granian server options that carry over capgate's bounds (see the module doc)."""
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    header_seconds = min(settings.request_read_timeout_seconds, settings.keep_alive_seconds)
    return {
        "address": settings.host,
        "port": settings.port,
        "interface": Interfaces.RSGI,
        "http": HTTPModes.http1,
        "websockets": False,
        "backlog": 1024,
        # Above max_connections, so that past it the app answers 503 (RsgiApp.__rsgi__)
        # rather than granian holding the request; past twice as many it holds them.
        "backpressure": 2 * settings.max_connections,
        "http1_settings": HTTP1Settings(
            header_read_timeout=max(1, round(header_seconds * 1000)),
            keep_alive=True,
            max_buffer_size=max(8192, settings.max_request_bytes),
        ),
        "log_level": _granian_level(settings.log_level),
        # granian's own loggers go through capgate's handlers (capgate.logs).
        "log_dictconfig": {
            "version": 1,
            "disable_existing_loggers": False,
            "loggers": {"_granian": {"handlers": [], "propagate": True}},
        },
        "log_access": False,
    }


def _granian_level(level: str) -> Any:
    from granian.log import LogLevels

    name = level.lower()
    return LogLevels(name) if name in LogLevels.__members__ else LogLevels.info


class _Quiet(logging.Filter):
    """Drops granian's notice that its embedded server is experimental (capgate runs it
    on purpose, and tests it: tests/system/test_rsgi.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()


def serve(app: App) -> None:
    """Serve `app` in this process with granian's RSGI interface until SIGINT or SIGTERM:
    one process, as uvicorn with one worker (a crash of it leaves nothing behind)."""
    import uvloop

    uvloop.run(_serve(app))


async def _serve(app: App) -> None:
    from granian.server.embed import Server

    logging.getLogger("_granian").addFilter(_Quiet())
    rsgi = RsgiApp(app)
    await rsgi.startup()  # Before listening, as uvicorn's lifespan.
    try:
        server = Server(rsgi, **granian_options(app.settings))
        loop = asyncio.get_running_loop()

        stop_server: Callable[[], None] = server.stop  # (granian's is untyped)

        def stop() -> None:
            rsgi.stopping = True
            stop_server()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        await server.serve()
    finally:
        await rsgi.shutdown()


class WorkerApp(RsgiApp):
    """The app of one granian worker process (`serve --workers N`): it starts and stops
    itself in the worker's own event loop."""

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.shutdown())


def worker_app() -> WorkerApp:
    """The app each worker process builds from CAPGATE_* variables (the factory granian
    calls; see app_from_environment)."""
    from capgate.api.app import app_from_environment
    from capgate.logs import configure

    app = app_from_environment()
    configure(app.settings.log_level, app.settings.log_format)  # A fresh process's logging.
    return WorkerApp(app)


def serve_workers(settings: Settings, workers: int) -> None:
    """Serve with `workers` granian worker processes sharing the port; each builds its own
    app from the environment (`capgate serve` put the settings there)."""
    from granian.constants import Loops
    from granian.server import Server

    logging.getLogger("_granian").addFilter(_Quiet())
    Server(
        "capgate.api.rsgi:worker_app",
        workers=workers,
        factory=True,
        loop=Loops.uvloop,
        **granian_options(settings),
    ).serve()
