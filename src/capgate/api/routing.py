"""The route table: exact paths, and path prefixes for routes that carry an id in the path.

Each route knows how to answer an error in its own dialect, so failures that happen before
the handler runs (an oversized body) still reach the client in the shape it expects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from capgate.api.http import Request, Response
from capgate.model import CapgateError

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
