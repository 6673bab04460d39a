"""Fixtures that start real capgate processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import CapgateServer, ServerFactory


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers on demand (same data directory unless told otherwise); stop them all."""
    servers: list[CapgateServer] = []

    def start(data: Path | None = None, *args: str, **settings: str) -> CapgateServer:
        server = CapgateServer(data or tmp_path / "data", *args, **settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def idle_server(start_server: ServerFactory, tmp_path: Path) -> CapgateServer:
    """A server that accepts tasks but solves nothing (an API-only node).

    It has a store of its own: a solving server on the same store would solve its tasks.
    """
    return start_server(tmp_path / "idle-data", local_solving="false")


@pytest.fixture
def server(start_server: ServerFactory) -> CapgateServer:
    """A server with the local OCR solver and the test-key solver running."""
    return start_server()
