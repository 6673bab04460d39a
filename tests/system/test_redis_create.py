"""Creates batched into one Redis script call (redis_create): each caller gets exactly what
a create of its own would have got, and Redis ends up the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from capgate.keys import hash_secret
from capgate.model import CapgateError, ErrorCode, Task, TaskSpec, TaskType
from capgate.store import redis_create
from capgate.store.redis import RedisStore

pytestmark = [pytest.mark.system, pytest.mark.anyio]

T0 = 1_700_000_000.0
DAY = 86_400.0
IMAGE = TaskSpec(TaskType.IMAGE_TO_TEXT, {"case": True}, b"\x89PNG" + b"\0" * 50)
TOKEN_TASK = TaskSpec(TaskType.TURNSTILE, {"websiteKey": "k", "websiteURL": "https://x"})


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Create:
    """One create_task call: its key (by name), spec, cost, limit and idempotency."""

    key: str
    spec: TaskSpec = IMAGE
    cost: int = 1
    limit: int = 0
    idem: tuple[str, bytes] | None = None
    deadline: float = 120.0


# Alice can pay for 5 of 1; bob has plenty but may have 3 in flight; carol's are free.
BALANCES = {"alice": 5, "bob": 1000, "carol": 0}
OPS = [
    Create("alice"),
    Create("bob", limit=3, idem=("x", b"one")),
    Create("alice", TOKEN_TASK, idem=("y", b"one")),
    Create("bob", limit=3, idem=("x", b"one")),  # a replay of a task made in this batch
    Create("bob", limit=3, idem=("x", b"two")),  # a conflict with it
    Create("alice", TOKEN_TASK, idem=("y", b"one")),
    Create("carol", cost=0, deadline=60.0),
    Create("alice"),
    Create("alice", deadline=300.0),
    Create("alice", idem=("z", b"one")),  # the last alice can pay for
    Create("alice", idem=("z", b"one")),  # its replay: no money needed
    Create("alice"),  # balance too low
    Create("alice", idem=("w", b"one")),  # too low: its key is kept by nothing
    Create("alice", cost=0),  # free: no balance needed
    Create("bob", limit=3),
    Create("bob", limit=3),  # the third in flight
    Create("bob", limit=3),  # one too many
    Create("bob", limit=3, idem=("x", b"one")),  # a replay is no new task: allowed
    Create("bob", limit=3, idem=("v", b"one")),  # too many
    Create("carol", cost=0, limit=1),  # carol's first (deadline 60) counts: too many
    Create("carol", cost=0, limit=2),
    Create("alice", idem=("stored", b"one")),  # a replay of a task made before the batch
    Create("alice", idem=("stored", b"two")),  # and a conflict with it
]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    admin = aioredis.Redis.from_url(redis_url)
    yield admin
    await admin.aclose()


async def _fresh(redis_url: str, client: aioredis.Redis) -> tuple[RedisStore, dict[str, int]]:
    """An empty database with the three keys and one task made before (alice's 'stored')."""
    await client.flushdb()
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    ids = {}
    for name, balance in BALANCES.items():
        ids[name] = (await store.create_key(name, hash_secret(name), balance + 1, T0)).id
    stored = await store.create_task(
        ids["alice"], IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY, ("stored", b"one")
    )
    assert stored.id == 1
    # Bob and carol spent one as well, so each key starts with its balance above.
    for name in ("bob", "carol"):
        await store.add_balance(ids[name], -1)
    return store, ids


def _call(store: RedisStore, ids: dict[str, int], op: Create) -> Awaitable[Task]:
    return store.create_task(
        ids[op.key],
        op.spec,
        op.cost,
        "ip",
        T0,
        T0 + op.deadline,
        T0 + DAY,
        op.idem,
        op.limit,
    )


async def _outcome(call: Awaitable[Task]) -> object:
    try:
        task = await call
    except CapgateError as exc:
        return exc.code
    return task


async def _state(client: aioredis.Redis) -> dict[bytes, object]:
    """Every key but the scripts' own, with its contents and expiry."""
    found: dict[bytes, object] = {}
    async for name in client.scan_iter("*"):
        kind = await client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        value: object
        if kind == "hash":
            value = await client.hgetall(name)
        elif kind == "set":
            value = await client.smembers(name)
        elif kind == "zset":
            value = await client.zrange(name, 0, -1, withscores=True)
        else:
            value = await client.get(name)
        found[name] = (value, (await client.pttl(name)) > 0)
    return found


def _spy(store: RedisStore) -> list[int]:
    """The size of every batch the store sends from now on."""
    sizes: list[int] = []
    send: Callable[[list[Any], int], Awaitable[Any]] = store._creates._send

    async def counting(arguments: list[Any], count: int) -> Any:
        sizes.append(count)
        return await send(arguments, count)

    store._creates._send = counting
    return sizes


async def test_a_batch_answers_each_create_as_alone_and_writes_the_same(
    redis_url: str, client: aioredis.Redis
) -> None:
    # One at a time: each create a script call of its own.
    store, ids = await _fresh(redis_url, client)
    sizes = _spy(store)
    alone = [await _outcome(_call(store, ids, op)) for op in OPS]
    counts = {name: await store.in_flight(key_id) for name, key_id in ids.items()}
    depth = await store.queue_depth()
    await store.close()
    expected = await _state(client)
    assert sizes == [1] * len(OPS)
    # The same creates started in one event-loop turn: one call.
    store, ids = await _fresh(redis_url, client)
    sizes = _spy(store)
    together = await asyncio.gather(*(_outcome(_call(store, ids, op)) for op in OPS))
    assert sizes == [len(OPS)]
    assert together == alone
    assert {name: await store.in_flight(key_id) for name, key_id in ids.items()} == counts
    assert await store.queue_depth() == depth
    await store.close()
    assert await _state(client) == expected
    # What the sequence means (so that both agreeing is no accident).
    new = [o.id for o in alone if isinstance(o, Task)]
    assert len(new) == 16 and len(set(new)) == 12  # 11 new, 5 replays (of 4 tasks)
    assert counts == {"alice": 7, "bob": 3, "carol": 2}
    conflict, zero, busy = ErrorCode.IDEMPOTENCY_CONFLICT, ErrorCode.ZERO_BALANCE, ErrorCode.NO_SLOT
    refused = [o for o in alone if not isinstance(o, Task)]
    assert refused == [conflict, zero, zero, busy, busy, busy, conflict]


async def test_a_batch_on_redis_clock_returns_the_times_it_stored(redis_url: str) -> None:
    store = RedisStore(redis_url)  # times on Redis' clock
    await store.open()
    try:
        key = await store.create_key("k", hash_secret("k"), 100, T0)
        sizes = _spy(store)
        # A node whose clock is a day behind; deadlines of three lengths.
        made = await asyncio.gather(
            *(
                store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + s, T0 + DAY)
                for s in (60, 120, 120, 60.5, 300)
            )
        )
        assert sizes == [5]
        for task in made:
            stored = await store.get_task(task.id)
            assert stored is not None
            assert (stored.created_at, stored.deadline_at, stored.expires_at) == (
                task.created_at,
                task.deadline_at,
                task.expires_at,
            )
            assert stored.created_at == made[0].created_at != T0
        spans = [t.deadline_at - t.created_at for t in made]
        assert spans == pytest.approx([60, 120, 120, 60.5, 300], abs=1e-6)
    finally:
        await store.close()


async def test_more_creates_than_a_batch_holds_go_in_several(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_create, "MAX_BATCH", 50)
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    try:
        key = await store.create_key("k", hash_secret("k"), 10**6, T0)
        sizes = _spy(store)
        made = await asyncio.gather(
            *(store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY) for _ in range(120))
        )
        assert sizes == [50, 50, 20]
        assert [t.id for t in made] == list(range(1, 121))
        assert await store.in_flight(key.id) == 120 and await store.queue_depth() == 120
        found = await store.get_key(key.id)
        assert found is not None and found.balance == 10**6 - 120
    finally:
        await store.close()


async def test_a_batch_that_fails_fails_every_create_in_it_and_writes_nothing(
    redis_url: str, client: aioredis.Redis
) -> None:
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    try:
        key = await store.create_key("k", hash_secret("k"), 100, T0)
        await client.set("{cg}:key:99", "not an account")  # damaged by hand
        before = await _state(client)
        outcomes = await asyncio.gather(
            store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY),
            store.create_task(99, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY),
            store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY),
            return_exceptions=True,
        )
        assert all(isinstance(o, ResponseError) for o in outcomes), outcomes
        assert await _state(client) == before
        # The next batch is unharmed.
        task = await store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
        assert task.id == 1
    finally:
        await store.close()


async def test_a_create_whose_caller_went_away_is_made_all_the_same(redis_url: str) -> None:
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    try:
        key = await store.create_key("k", hash_secret("k"), 100, T0)
        left = asyncio.ensure_future(
            store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
        )
        stays = asyncio.ensure_future(
            store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
        )
        await asyncio.sleep(0)  # both queued in this turn's batch
        left.cancel()
        task = await stays
        assert left.cancelled()
        assert task.id == 2 and await store.in_flight(key.id) == 2
        found = await store.get_key(key.id)
        assert found is not None and found.balance == 98
    finally:
        await store.close()


async def test_creates_that_come_while_a_batch_is_on_its_way_go_together_next(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    try:
        key = await store.create_key("k", hash_secret("k"), 100, T0)
        sizes: list[int] = []
        send = store._creates._send
        release = asyncio.Event()

        async def slow(arguments: list[Any], count: int) -> Any:
            sizes.append(count)
            await release.wait()  # Redis is busy: the answer takes a while
            return await send(arguments, count)

        store._creates._send = slow

        def one() -> asyncio.Future[Task]:
            return asyncio.ensure_future(
                store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
            )

        first = one()
        await asyncio.sleep(0.01)
        later = []
        for _ in range(3):  # each in a turn of its own
            later.append(one())
            await asyncio.sleep(0.01)
        assert sizes == [1]
        release.set()
        made = [await first] + [await task for task in later]
        assert sizes == [1, 3]
        assert [t.id for t in made] == [1, 2, 3, 4]
    finally:
        await store.close()
