"""The stores every store contract test runs against: memory, SQLite and Redis (a real
redis-server; see tests/conftest.py's `redis_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from capgate.store import MemoryStore, SqliteStore, Store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory":
        return MemoryStore
    if request.param == "redis":
        from capgate.store.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        # The tests move time: the store keeps their clock, not Redis'.
        return lambda: RedisStore(url, server_time=False)
    return lambda: SqliteStore(tmp_path / "capgate.db")


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    store = make_store()
    await store.open()
    yield store
    await store.close()
