"""The route table: exact paths, and path prefixes for routes that carry an id in the path.

Each route knows how to answer an error in its own dialect, so failures that happen before
the handler runs (an oversized body) still reach the client in the shape it expects.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec

from capgate.api.http import Request, Response
from capgate.metrics import Metrics
from capgate.model import CapgateError, ErrorCode

log = logging.getLogger("capgate.api")

Handler = Callable[[Request], Awaitable[Response]]
ErrorRenderer = Callable[[CapgateError], Response]


class Route(msgspec.Struct, frozen=True):
    """A handler and the way its dialect answers errors."""

    handler: Handler
    on_error: ErrorRenderer


class Routes:
    """Finds the route for a path: exact matches first, then the longest prefix."""

    def __init__(self) -> None:
        self.exact: dict[str, Route] = {}
        self.prefixes: list[tuple[str, Route]] = []

    def add(self, path: str, route: Route) -> None:
        """Serve `path` exactly."""
        if path in self.exact:
            raise ValueError(f"two routes for {path}")
        self.exact[path] = route

    def add_prefix(self, prefix: str, route: Route) -> None:
        """Serve every path under `prefix` (which ends with '/')."""
        self.prefixes.append((prefix, route))
        self.prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def find(self, path: str) -> Route | None:
        """The route serving this path, if any."""
        route = self.exact.get(path)
        if route is not None:
            return route
        for prefix, candidate in self.prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return candidate
        return None


def guarded(
    handler: Handler,
    render: Callable[[Request, CapgateError], Response],
    *,
    label: str,
    metrics: Metrics,
    method: str | None = None,
) -> Handler:
    """Answer every failure with `render` (the dialect's error shape), never a stack trace,
    and count every answer by dialect and outcome. With `method`, refuse every other
    method with NO_SUCH_METHOD (here rather than in a wrapper: one coroutine fewer per
    request)."""
    counts = metrics.requests
    ok = (("dialect", label), ("code", "ok"))  # The key metrics.request would build.

    async def guard(request: Request) -> Response:
        try:
            if method is not None and request.method != method:
                raise CapgateError(ErrorCode.NO_SUCH_METHOD, f"Use {method} for {request.path}")
            response = await handler(request)
        except CapgateError as error:
            metrics.request(label, error.code.value)
            log.debug("%s %s refused: %s", request.method, request.path, error.code.value)
            return render(request, error)
        except Exception:
            log.exception("unexpected error on %s", request.path)
            metrics.request(label, ErrorCode.INTERNAL.value)
            internal = CapgateError(ErrorCode.INTERNAL, "Temporary server error; try again")
            return render(request, internal)
        counts[ok] += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s answered %d", request.method, request.path, response.status)
        return response

    return guard
