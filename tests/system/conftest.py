"""Fixtures that start real capgate processes on 127.0.0.1."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from capgate.ocr import synth
from tests.system.server import CapgateServer

ServerFactory = Callable[..., CapgateServer]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers on demand (same data directory unless told otherwise); stop them all."""
    servers: list[CapgateServer] = []

    def start(data: Path | None = None, **settings: str) -> CapgateServer:
        server = CapgateServer(data or tmp_path / "data", **settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def idle_server(start_server: ServerFactory) -> CapgateServer:
    """A server that accepts tasks but solves nothing (an API-only node)."""
    return start_server(local_solving="false")


@pytest.fixture
def server(start_server: ServerFactory) -> CapgateServer:
    """A server with the local OCR solver and the test-key solver running."""
    return start_server()


def captchas(seed: int, n: int) -> list[tuple[str, str]]:
    """Fresh 4-character digit+uppercase captchas as (base64 PNG, label)."""
    images = synth.generate(seed, n, synth.CHARSET_B, 4, 4)
    return [(base64.b64encode(png).decode(), label) for png, label in images]


def image_task(body: str) -> dict[str, str]:
    """An ImageToTextTask object as clients send it."""
    return {"type": "ImageToTextTask", "body": body}
