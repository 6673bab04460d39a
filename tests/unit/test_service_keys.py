"""Service.authenticate: found keys are remembered a second, and a busy key is read again
by one request while the others go on with the old copy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from capgate.clock import SystemClock
from capgate.config import Settings
from capgate.keys import hash_secret
from capgate.model import CapgateError, ErrorCode, Key
from capgate.router import Router
from capgate.service import Service
from capgate.store import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingStore(MemoryStore):
    """The in-memory store, counting key lookups and making each take a moment."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def key_by_hash(self, key_hash: bytes) -> Key | None:
        self.lookups += 1
        await asyncio.sleep(0.05)
        return await super().key_by_hash(key_hash)


async def test_one_request_reads_a_busy_key_again(tmp_path: Path) -> None:
    store = CountingStore()
    await store.open()
    service = Service(store, Router([]), Settings(data=tmp_path), SystemClock())
    key = await store.create_key("k", hash_secret("secret"), 100, time.time())

    assert (await service.authenticate("secret", "127.0.0.1")).id == key.id
    await asyncio.gather(*(service.authenticate("secret", "127.0.0.1") for _ in range(20)))
    assert store.lookups == 1  # remembered

    await asyncio.sleep(1.05)  # the second is up
    found = await asyncio.gather(*(service.authenticate("secret", "127.0.0.1") for _ in range(20)))
    assert all(k.id == key.id for k in found)
    assert store.lookups == 2  # one read again; the others went on with the old copy

    with pytest.raises(CapgateError) as refused:
        await service.authenticate("no such secret", "127.0.0.1")
    assert refused.value.code is ErrorCode.KEY_DOES_NOT_EXIST
    await store.close()
