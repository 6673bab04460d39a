"""The Redis store's data layout: the upgrade from version 1, and the in-flight counters.

Version 1 is written here by hand, key by key, as the code before schema 2 wrote it (see
src/capgate/store/redis_schema.py): a queue by type, a set of tasks in flight per key,
and tasks whose hashes carry their id, their poll count and empty idempotency fields.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from capgate.keys import hash_secret
from capgate.model import CapgateError, ErrorCode, Key, Solution, TaskSpec, TaskType
from capgate.store.redis import RedisStore

pytestmark = [pytest.mark.system, pytest.mark.anyio]

T0 = 1_700_000_000.0
DAY = 86_400.0
IMAGE = TaskSpec(TaskType.IMAGE_TO_TEXT, {"case": True}, b"\x89PNG" + b"\0" * 50)
TOKEN_TASK = TaskSpec(TaskType.TURNSTILE, {"websiteKey": "k", "websiteURL": "https://x"})
IMAGE_AND_TOKEN = {TaskType.IMAGE_TO_TEXT, TaskType.TURNSTILE}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    admin = aioredis.Redis.from_url(redis_url)
    yield admin
    await admin.aclose()


async def _old_key(client: aioredis.Redis, key_id: int, name: str, balance: int) -> None:
    """A key as every version wrote it (create_key did not change)."""
    secret = hash_secret(name).hex()
    await client.hset(
        f"{{cg}}:key:{key_id}",
        mapping={
            "id": key_id,
            "name": name,
            "key_hash": secret,
            "balance": balance,
            "spent": 0,
            "created_at": repr(T0),
            "dialect": "",
            "worker": 0,
            "allow_ips": "",
            "site": "",
        },
    )
    await client.set(f"{{cg}}:keyhash:{secret}", key_id)
    await client.zadd("{cg}:keys", {str(key_id): key_id})
    await client.set("{cg}:seq:keys", key_id)


async def _old_task(
    client: aioredis.Redis,
    task_id: int,
    key_id: int,
    spec: TaskSpec,
    status: int,
    *,
    by_key: bool = True,
    idem: tuple[str, str] = ("", ""),
    polls: int = 0,
    token: str = "",
) -> None:
    """A task as version 1's create (and lease, complete) wrote it, with its indexes."""
    t = f"{{cg}}:task:{task_id}"
    fields: dict[Any, Any] = {
        "id": task_id,
        "key_id": key_id,
        "type": spec.type.value,
        "params": b'{"case":true}' if spec is IMAGE else b'{"websiteKey":"k"}',
        "status": status,
        "created_at": repr(T0),
        "deadline_at": repr(T0 + 120),
        "cost": 1,
        "ip": "ip",
        "expires_at": repr(T0 + DAY),
        "attempts": 1 if status else 0,
        "polls": polls,
        "idem_key": idem[0],
        "idem_hash": idem[1],
    }
    if spec.body and status < 2:
        fields["body"] = spec.body
    if status == 1:
        fields |= {"started_at": repr(T0), "lease_token": token, "lease_expires_at": repr(T0 + 30)}
    if status == 2:
        fields |= {"finished_at": repr(T0 + 5), "solver": "ocr", "solution": b'{"text":"x"}'}
        fields |= {"lease_token": "", "lease_expires_at": ""}
    await client.hset(t, mapping=fields)
    await client.pexpire(t, int((DAY + 3600) * 1000))
    if status == 0:
        await client.zadd(f"{{cg}}:queued:{spec.type.value}", {str(task_id): task_id})
        if by_key:  # version 1 (and no older) kept per-key queues too
            await client.zadd(f"{{cg}}:kq:{spec.type.value}:{key_id}", {str(task_id): task_id})
            await client.sadd(f"{{cg}}:qkeys:{spec.type.value}", key_id)
    if status == 1:
        await client.zadd("{cg}:running", {str(task_id): T0 + 30})
        await client.sadd(f"{{cg}}:lease:{token}", task_id)
    if status in (0, 1):
        await client.zadd("{cg}:unfinished", {str(task_id): T0 + 120})
        await client.sadd(f"{{cg}}:inflight:{key_id}", task_id)
    await client.zadd("{cg}:expiring", {str(task_id): T0 + DAY})
    if idem[0]:
        await client.set(f"{{cg}}:idem:{key_id}:{idem[0]}", task_id)
    await client.set("{cg}:seq:tasks", max(task_id, int(await client.get("{cg}:seq:tasks") or 0)))


async def _write_version_1(client: aioredis.Redis) -> None:
    """Two keys; alice has two queued tasks (one only in the queue by type, as stores
    from before per-key queues left it), one running, one solved, and in her in-flight set
    a task Redis has expired since; bob one queued task with an idempotency key."""
    await _old_key(client, 1, "alice", 100)
    await _old_key(client, 2, "bob", 100)
    await _old_task(client, 1, 1, IMAGE, 0, polls=2)
    await _old_task(client, 2, 1, TOKEN_TASK, 0, by_key=False)
    await _old_task(client, 3, 1, IMAGE, 1, token="tok")
    await _old_task(client, 4, 1, IMAGE, 2)
    await client.sadd("{cg}:inflight:1", 99)  # expired by Redis: version 1 never removed it
    await _old_task(client, 5, 2, IMAGE, 0, idem=("retry-1", "ab12"))
    await client.set("{cg}:seq:tasks", 99)


async def _layout(client: aioredis.Redis) -> dict[bytes, object]:
    """Every key and its contents (the hashes', sets' and sorted sets' members)."""
    found: dict[bytes, object] = {}
    async for name in client.scan_iter("*"):
        kind = _text(await client.type(name))
        if kind == "hash":
            found[name] = await client.hgetall(name)
        elif kind == "set":
            found[name] = await client.smembers(name)
        elif kind == "zset":
            found[name] = await client.zrange(name, 0, -1, withscores=True)
        else:
            found[name] = await client.get(name)
    return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _key(store: RedisStore, name: str) -> Key:
    key = await store.key_by_hash(hash_secret(name))
    assert key is not None
    return key


async def test_a_version_1_database_is_upgraded_once_and_keeps_its_tasks(
    redis_url: str, client: aioredis.Redis
) -> None:
    await _write_version_1(client)
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    try:
        assert await client.get("{cg}:schema") == b"2"
        assert [k async for k in client.scan_iter("{cg}:queued:*")] == []
        assert [k async for k in client.scan_iter("{cg}:inflight:*")] == []
        # In flight: alice's two queued and one running task (not the solved one, not the
        # one Redis expired); bob's one.
        alice, bob = await _key(store, "alice"), await _key(store, "bob")
        assert (await store.in_flight(alice.id), await store.in_flight(bob.id)) == (3, 1)
        assert await store.queue_depth() == 3
        # Old tasks read as before, their id and poll count included.
        old = await store.get_task(1)
        assert old is not None and (old.id, old.polls, old.key_id) == (1, 2, alice.id)
        # Bob's idempotency key still replays and refuses.
        spec_args = (IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
        again = await store.create_task(bob.id, *spec_args, ("retry-1", bytes.fromhex("ab12")))
        assert again.id == 5
        with pytest.raises(CapgateError) as caught:
            await store.create_task(bob.id, *spec_args, ("retry-1", b"other"))
        assert caught.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
        # The in-flight limit counts the old tasks: alice may have 4, and has 3.
        new = await store.create_task(alice.id, *spec_args, max_in_flight=4)
        assert new.id == 100
        with pytest.raises(CapgateError) as caught:
            await store.create_task(alice.id, *spec_args, max_in_flight=4)
        assert caught.value.code is ErrorCode.NO_SLOT
        assert await store.queue_depth() == 4
        # Every queued task is leasable, the one only in the queue by type included.
        leased = await store.lease(IMAGE_AND_TOKEN, 10, 30, T0 + 1)
        assert sorted(lease.task.id for lease in leased) == [1, 2, 5, 100]
        assert await store.queue_depth() == 0
        # The task running before the upgrade finishes under its lease, once.
        assert await store.complete(3, "tok", Solution(text="x"), "ocr", T0 + 2)
        assert not await store.complete(3, "tok", Solution(text="x"), "ocr", T0 + 2)
        assert await store.in_flight(alice.id) == 3  # 1, 2, 100
        for lease in leased:
            await store.complete(lease.task.id, lease.token, Solution(text="x"), "ocr", T0 + 3)
        assert (await store.in_flight(alice.id), await store.in_flight(bob.id)) == (0, 0)
    finally:
        await store.close()
    # A second start changes nothing.
    before = await _layout(client)
    reopened = RedisStore(redis_url, server_time=False)
    await reopened.open()
    await reopened.close()
    assert await _layout(client) == before


async def test_a_database_of_a_newer_layout_is_refused_untouched(
    redis_url: str, client: aioredis.Redis
) -> None:
    await _write_version_1(client)
    await client.set("{cg}:schema", 3)
    before = await _layout(client)
    store = RedisStore(redis_url, server_time=False)
    with pytest.raises(RuntimeError, match="layout version 3"):
        await store.open()
    assert await _layout(client) == before
    await store.close()  # nothing left open


async def test_an_empty_database_starts_at_the_current_layout(
    redis_url: str, client: aioredis.Redis
) -> None:
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    await store.close()
    assert await client.get("{cg}:schema") == b"2"


async def _new_store(redis_url: str) -> RedisStore:
    store = RedisStore(redis_url, server_time=False)
    await store.open()
    return store


async def test_each_task_leaves_the_in_flight_count_once_on_every_path(redis_url: str) -> None:
    store = await _new_store(redis_url)
    try:
        key = await store.create_key("k", hash_secret("k"), 1000, T0)
        made = [
            await store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
            for _ in range(6)
        ]
        assert await store.in_flight(key.id) == 6
        leases = await store.lease({TaskType.IMAGE_TO_TEXT}, 3, 30, T0)
        first, second, third = (lease.task.id for lease in leases)
        # A failure that is retried keeps the task in flight; one that is not ends it.
        code = ErrorCode.CAPTCHA_UNSOLVABLE

        async def fail(task_id: int, token: str, retry: bool) -> bool:
            return await store.fail(
                task_id, token, code, "x", "ocr", T0 + 1, retry=retry, max_attempts=3
            )

        assert await fail(first, leases[0].token, retry=True)
        assert await store.in_flight(key.id) == 6
        assert await fail(second, leases[1].token, retry=False)
        assert not await fail(second, leases[1].token, retry=False)
        assert await store.in_flight(key.id) == 5
        # A lease that runs out puts the task back: still in flight.
        assert await store.requeue_expired_leases(T0 + 31, 3) == [third]
        assert await store.in_flight(key.id) == 5
        # The deadline fails every unfinished one; the sweeps and purge after it count none.
        assert len(await store.fail_overdue(T0 + 121)) == 5
        assert await store.in_flight(key.id) == 0
        assert await store.fail_overdue(T0 + 122) == []
        assert await store.requeue_expired_leases(T0 + 122, 3) == []
        # Purge: of finished tasks, nothing in flight; of a queued or running one, once.
        queued = await store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + 200)
        await store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + 200)
        (running,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
        assert running.task.id == queued.id
        assert await store.in_flight(key.id) == 2
        assert await store.purge(T0 + DAY + 1, 100) == len(made) + 2
        assert await store.in_flight(key.id) == 0
        assert await store.queue_depth() == 0
        assert not await store.complete(queued.id, running.token, Solution(text="x"), "o", T0)
        assert await store.in_flight(key.id) == 0
    finally:
        await store.close()


async def test_tasks_redis_dropped_leave_the_count_and_block_no_key(
    redis_url: str, client: aioredis.Redis
) -> None:
    store = await _new_store(redis_url)
    try:
        key = await store.create_key("k", hash_secret("k"), 1000, T0)
        args = (IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
        made = [await store.create_task(key.id, *args, max_in_flight=3) for _ in range(3)]
        # Redis expires (or evicts) two of them before any node sweeps.
        await client.delete(f"{{cg}}:task:{made[0].id}", f"{{cg}}:task:{made[1].id}")
        # The next lease finds them gone and counts the key's tasks again.
        (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 5, 30, T0)
        assert lease.task.id == made[2].id
        assert await store.in_flight(key.id) == 1
        await store.create_task(key.id, *args, max_in_flight=3)
        await store.create_task(key.id, *args, max_in_flight=3)
        with pytest.raises(CapgateError):
            await store.create_task(key.id, *args, max_in_flight=3)
        # A running task that Redis dropped: the lease sweep counts again.
        await client.delete(f"{{cg}}:task:{lease.task.id}")
        assert await store.requeue_expired_leases(T0 + 31, 3) == [lease.task.id]
        assert await store.in_flight(key.id) == 2
    finally:
        await store.close()


async def test_a_counter_off_by_hand_is_mended_at_the_next_start(
    redis_url: str, client: aioredis.Redis
) -> None:
    store = await _new_store(redis_url)
    key = await store.create_key("k", hash_secret("k"), 1000, T0)
    args = (IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
    await store.create_task(key.id, *args, max_in_flight=2)
    # Too high: the key is refused, until a node starts.
    await client.hset(f"{{cg}}:key:{key.id}", "inflight", 50)
    with pytest.raises(CapgateError):
        await store.create_task(key.id, *args, max_in_flight=2)
    await store.close()
    store = await _new_store(redis_url)
    try:
        assert await store.in_flight(key.id) == 1
        await store.create_task(key.id, *args, max_in_flight=2)
        # Too low: read as none, and the next create writes the count it made.
        await client.hset(f"{{cg}}:key:{key.id}", "inflight", -5)
        assert await store.in_flight(key.id) == 0
        await store.create_task(key.id, *args, max_in_flight=2)
        assert await store.in_flight(key.id) == 1
    finally:
        await store.close()


async def test_a_start_mends_queues_in_slices_and_skips_a_long_recount(
    redis_url: str, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start must not stop Redis for every node on a large backlog: the queues are
    mended a slice at a time, and past RECOUNT_AT_START_MAX tasks in flight the counters
    (one script over all of them) are left as they are."""
    from capgate.store import redis_schema

    async def scripts_run_by_a_start() -> int:
        async def evalsha_calls() -> int:
            stats = await client.info("commandstats")
            return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

        before = await evalsha_calls()
        opened = await _new_store(redis_url)
        after = await evalsha_calls()
        await opened.close()
        return after - before

    monkeypatch.setattr(redis_schema, "RECOUNT_AT_START_MAX", 10)
    store = await _new_store(redis_url)
    key = await store.create_key("k", hash_secret("k"), 1000, T0)
    args = (IMAGE, 1, "ip", T0, T0 + 120, T0 + DAY)
    made = [await store.create_task(key.id, *args) for _ in range(11)]
    await store.close()
    monkeypatch.setattr(redis_schema, "REPAIR_SLICE", 100)
    whole = await scripts_run_by_a_start()
    monkeypatch.setattr(redis_schema, "REPAIR_SLICE", 3)
    assert await scripts_run_by_a_start() == whole + 3  # 11 tasks: slices of 3, 3, 3 and 2
    # Queues lost by hand, and a counter off: 11 in flight, over the recount's limit.
    await client.delete(f"{{cg}}:kq:ImageToText:{key.id}", "{cg}:qkeys:ImageToText")
    await client.hset(f"{{cg}}:key:{key.id}", "inflight", 50)
    store = await _new_store(redis_url)
    try:
        leases = await store.lease({TaskType.IMAGE_TO_TEXT}, 20, 30, T0)
        assert sorted(lease.task.id for lease in leases) == [task.id for task in made]
        assert await store.in_flight(key.id) == 50  # not counted again: too many in flight
        for lease in leases[:2]:
            assert await store.complete(lease.task.id, lease.token, Solution(text="x"), "o", T0)
        assert await store.in_flight(key.id) == 48
    finally:
        await store.close()
    # 9 in flight now, under the limit: the next start counts them again.
    store = await _new_store(redis_url)
    try:
        assert await store.in_flight(key.id) == 9
    finally:
        await store.close()
