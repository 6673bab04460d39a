"""One contract for every store: the in-memory reference and SQLite must behave the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from capgate.keys import hash_secret
from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Solution,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
)
from capgate.store import SqliteStore, Store
from capgate.store.base import RefundLimit, Spending, hour_of, soft_id_of

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
DAY = 86_400.0
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 200
IMAGE = TaskSpec(TaskType.IMAGE_TO_TEXT, {"case": True}, PNG)
TOKEN_TASK = TaskSpec(TaskType.TURNSTILE, {"websiteKey": "k", "websiteURL": "https://x"})


async def new_key(store: Store, balance: int = 10_000, name: str = "k") -> Key:
    return await store.create_key(name, hash_secret(name), balance, T0)


async def create(
    store: Store, key_id: int, spec: TaskSpec, cost: int, ip: str, now: float, deadline: float
) -> Task:
    """Queue a task kept for a day, as the default retention does."""
    return await store.create_task(key_id, spec, cost, ip, now, deadline, now + DAY)


async def balance_of(store: Store, key: Key) -> tuple[int, int]:
    current = await store.get_key(key.id)
    assert current is not None
    return current.balance, current.spent


# --- keys -----------------------------------------------------------------------------


async def test_keys_are_found_by_hash_only(store: Store) -> None:
    key = await new_key(store, 5000, "alice")
    assert (await store.key_by_hash(hash_secret("alice"))) == key
    assert await store.key_by_hash(hash_secret("bob")) is None
    assert await store.get_key(key.id + 100) is None
    with pytest.raises(ValueError, match="exists"):
        await store.create_key("again", hash_secret("alice"), 0, T0)
    other = await new_key(store, 0, "bob")
    assert [k.id for k in await store.list_keys()] == [key.id, other.id]


async def test_add_balance(store: Store) -> None:
    key = await new_key(store, 1000)
    changed = await store.add_balance(key.id, 500)
    assert changed is not None and changed.balance == 1500
    assert await store.add_balance(key.id + 100, 5) is None


# --- create ---------------------------------------------------------------------------


async def test_create_debits_and_queues(store: Store) -> None:
    key = await new_key(store, 10_000)
    task = await create(store, key.id, IMAGE, 1000, "1.2.3.4", T0, T0 + 120)
    assert task.status is TaskStatus.QUEUED
    assert (task.type, task.params, task.body) == (IMAGE.type, IMAGE.params, IMAGE.body)
    read = await store.get_task(task.id)
    assert read is not None and read.params == IMAGE.params and read.body is None
    assert (task.cost, task.ip, task.created_at, task.deadline_at) == (
        1000,
        "1.2.3.4",
        T0,
        T0 + 120,
    )
    assert (task.attempts, task.polls, task.solution, task.error_code) == (0, 0, None, None)
    assert await balance_of(store, key) == (9000, 0)
    assert await store.queue_depth() == 1
    assert await store.get_task(task.id) == msgspec.structs.replace(task, body=None)


async def test_create_refuses_short_balance_and_stores_nothing(store: Store) -> None:
    key = await new_key(store, 999)
    with pytest.raises(CapgateError) as caught:
        await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    assert caught.value.code is ErrorCode.ZERO_BALANCE
    assert await balance_of(store, key) == (999, 0)
    assert await store.queue_depth() == 0
    assert await store.get_task(1) is None


async def test_free_tasks_need_no_balance(store: Store) -> None:
    key = await new_key(store, 0)
    task = await create(store, key.id, TOKEN_TASK, 0, "ip", T0, T0 + 120)
    assert task.status is TaskStatus.QUEUED
    assert await balance_of(store, key) == (0, 0)


async def test_task_ids_increase(store: Store) -> None:
    key = await new_key(store)
    ids = [(await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 1)).id for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


# --- polls ----------------------------------------------------------------------------


async def test_polls_are_added_in_batches_and_gone_tasks_skipped(store: Store) -> None:
    key = await new_key(store)
    one = await create(store, key.id, IMAGE, 10, "ip", T0, T0 + 120)
    two = await create(store, key.id, IMAGE, 10, "ip", T0, T0 + 120)
    await store.add_polls({one.id: 3, two.id: 1})
    await store.add_polls({one.id: 2, two.id + 1000: 5})
    await store.add_polls({})
    assert [(await store.get_task(t.id) or one).polls for t in (one, two)] == [5, 1]
    assert await store.get_task(two.id + 1000) is None  # no task made up for a gone id


# --- leases ---------------------------------------------------------------------------


async def test_lease_takes_oldest_of_the_asked_types_and_counts_an_attempt(store: Store) -> None:
    key = await new_key(store)
    image1 = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    token = await create(store, key.id, TOKEN_TASK, 0, "ip", T0, T0 + 120)
    image2 = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    leases = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0 + 1)
    assert [lease.task.id for lease in leases] == [image1.id]
    lease = leases[0]
    assert lease.expires_at == T0 + 31
    assert lease.task.status is TaskStatus.RUNNING
    assert (lease.task.attempts, lease.task.started_at) == (1, T0 + 1)
    assert lease.task.body == PNG
    more = await store.lease({TaskType.IMAGE_TO_TEXT, TaskType.TURNSTILE}, 10, 30, T0 + 2)
    assert [x.task.id for x in more] == [token.id, image2.id]
    assert await store.lease({TaskType.IMAGE_TO_TEXT}, 10, 30, T0 + 3) == []
    assert await store.lease({TaskType.IMAGE_TO_TEXT}, 0, 30, T0 + 3) == []
    assert await store.queue_depth() == 0


async def test_complete_once_charges_once_and_drops_the_image(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    solution = Solution(text="AB12", confidence=0.9)
    assert not await store.complete(task.id, "not-the-token", solution, "ocr", T0 + 1)
    assert await store.complete(task.id, lease.token, solution, "ocr", T0 + 2)
    assert not await store.complete(task.id, lease.token, Solution(text="X"), "ocr", T0 + 3)
    done = await store.get_task(task.id)
    assert done is not None
    assert done.status is TaskStatus.READY
    assert (done.solution, done.solver, done.finished_at) == (solution, "ocr", T0 + 2)
    assert done.body is None
    assert await balance_of(store, key) == (4000, 1000)


async def test_the_image_is_given_to_its_lease_holder_only_until_the_answer(
    store: Store,
) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    assert await store.held_image(task.id, "no-lease-yet", T0) is None
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await store.held_image(task.id, lease.token, T0 + 1) == IMAGE.body
    assert await store.held_image(task.id, "not-the-token", T0 + 1) is None
    assert await store.held_image(task.id + 1, lease.token, T0 + 1) is None
    assert await store.held_image(task.id, lease.token, T0 + 30) is None  # the lease ran out
    assert await store.complete(task.id, lease.token, Solution(text="AB12"), "ocr", T0 + 2)
    assert await store.held_image(task.id, lease.token, T0 + 3) is None  # answered: dropped


async def test_late_result_from_an_expired_lease_is_ignored(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    (old,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    # Expired but not yet swept: still refused.
    assert not await store.complete(task.id, old.token, Solution(text="late"), "ocr", T0 + 30)
    assert len(await store.requeue_expired_leases(T0 + 31, max_attempts=3)) == 1
    (new,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0 + 32)
    assert new.task.attempts == 2
    assert not await store.complete(task.id, old.token, Solution(text="late"), "ocr", T0 + 33)
    assert await store.complete(task.id, new.token, Solution(text="ok"), "ocr", T0 + 34)
    done = await store.get_task(task.id)
    assert done is not None and done.solution == Solution(text="ok")
    assert done.attempts == 2
    assert await balance_of(store, key) == (4000, 1000)


async def test_recent_tasks_are_newest_first_without_images(store: Store) -> None:
    key = await new_key(store)
    created = [await create(store, key.id, IMAGE, 1, "ip", T0 + i, T0 + 120) for i in range(5)]
    recent = await store.recent_tasks(3)
    assert [t.id for t in recent] == [t.id for t in reversed(created)][:3]
    assert all(t.body is None and t.type is TaskType.IMAGE_TO_TEXT for t in recent)
    assert await store.recent_tasks(0) == []
    assert len(await store.recent_tasks(100)) == 5


async def test_extend_lease(store: Store) -> None:
    key = await new_key(store)
    task = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await store.extend_lease(task.id, lease.token, T0 + 60, T0 + 20)
    assert len(await store.requeue_expired_leases(T0 + 45, 3)) == 0
    assert not await store.extend_lease(task.id, "wrong", T0 + 90, T0 + 21)
    assert not await store.extend_lease(task.id, lease.token, T0 + 90, T0 + 61)
    assert await store.complete(task.id, lease.token, Solution(text="x"), "ocr", T0 + 59)


async def test_failover_counts_an_attempt_under_the_same_lease(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await store.extend_lease(task.id, lease.token, T0 + 40, T0 + 10, count_attempt=True)
    assert await store.extend_lease(task.id, lease.token, T0 + 50, T0 + 20)
    assert not await store.extend_lease(task.id, "stale", T0 + 60, T0 + 21, count_attempt=True)
    assert await store.complete(task.id, lease.token, Solution(text="x"), "up", T0 + 45)
    done = await store.get_task(task.id)
    assert done is not None and done.attempts == 2
    assert await balance_of(store, key) == (4000, 1000)


async def test_retryable_failure_requeues_until_attempts_run_out(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    for attempt in (1, 2):
        (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0 + attempt)
        assert await store.fail(
            task.id,
            lease.token,
            ErrorCode.INTERNAL,
            "boom",
            "ocr",
            T0 + attempt,
            retry=True,
            max_attempts=3,
        )
        queued = await store.get_task(task.id)
        assert queued is not None and queued.status is TaskStatus.QUEUED
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0 + 5)
    assert await store.fail(
        task.id,
        lease.token,
        ErrorCode.INTERNAL,
        "boom",
        "ocr",
        T0 + 5,
        retry=True,
        max_attempts=3,
    )
    failed = await store.get_task(task.id)
    assert failed is not None and failed.status is TaskStatus.FAILED
    assert (failed.attempts, failed.error_code, failed.body) == (3, ErrorCode.INTERNAL, None)
    assert await balance_of(store, key) == (5000, 0)


async def test_final_failure_refunds_once(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await store.fail(
        task.id,
        lease.token,
        ErrorCode.CAPTCHA_UNSOLVABLE,
        "no text",
        "ocr",
        T0 + 1,
        retry=False,
        max_attempts=3,
    )
    assert not await store.fail(
        task.id,
        lease.token,
        ErrorCode.CAPTCHA_UNSOLVABLE,
        "again",
        "ocr",
        T0 + 2,
        retry=False,
        max_attempts=3,
    )
    assert len(await store.fail_overdue(T0 + 500)) == 0
    assert len(await store.requeue_expired_leases(T0 + 500, 3)) == 0
    failed = await store.get_task(task.id)
    assert failed is not None
    assert (failed.status, failed.error_code) == (TaskStatus.FAILED, ErrorCode.CAPTCHA_UNSOLVABLE)
    assert (failed.error_description, failed.solver) == ("no text", "ocr")
    assert await balance_of(store, key) == (5000, 0)


async def test_expired_lease_out_of_attempts_fails_and_refunds(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 1000)
    for round_ in range(2):
        start = T0 + round_ * 100
        assert len(await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, start)) == 1
        assert len(await store.requeue_expired_leases(start + 31, max_attempts=2)) == 1
    failed = await store.get_task(task.id)
    assert failed is not None and failed.status is TaskStatus.FAILED
    assert failed.error_code is ErrorCode.CAPTCHA_UNSOLVABLE
    assert await balance_of(store, key) == (5000, 0)


async def test_overdue_tasks_time_out_and_are_refunded(store: Store) -> None:
    key = await new_key(store, 5000)
    queued = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    running = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    later = await create(store, key.id, IMAGE, 1000, "ip", T0 + 60, T0 + 180)
    await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)  # leases `queued` (the oldest)
    assert len(await store.fail_overdue(T0 + 119)) == 0
    assert await store.fail_overdue(T0 + 120) == sorted([queued.id, running.id])
    assert len(await store.fail_overdue(T0 + 121)) == 0
    for task_id in (queued.id, running.id):
        task = await store.get_task(task_id)
        assert task is not None
        assert (task.status, task.error_code) == (TaskStatus.FAILED, ErrorCode.TASK_TIMEOUT)
        assert task.error_description == "No solver finished the task within its 120 s deadline"
    still = await store.get_task(later.id)
    assert still is not None and still.status is TaskStatus.QUEUED
    assert await balance_of(store, key) == (4000, 0)


async def test_purge_deletes_only_expired_tasks(store: Store) -> None:
    key = await new_key(store)
    old = [await create(store, key.id, IMAGE, 1, "ip", T0 + i, T0 + 120) for i in range(3)]
    new = await create(store, key.id, IMAGE, 1, "ip", T0 + 100, T0 + 220)
    short = await store.create_task(key.id, IMAGE, 1, "ip", T0 + 100, T0 + 220, T0 + 400)
    assert await store.purge(T0 + 399, limit=10) == 0
    assert await store.purge(T0 + 400, limit=10) == 1
    assert await store.get_task(short.id) is None
    assert await store.purge(T0 + DAY + 50, limit=2) == 2
    assert await store.purge(T0 + DAY + 50, limit=2) == 1
    for task in old:
        assert await store.get_task(task.id) is None
    assert await store.get_task(new.id) is not None


async def test_money_is_conserved_through_a_mixed_run(store: Store) -> None:
    key = await new_key(store, 10_000)
    tasks = [await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120) for _ in range(5)]
    leases = await store.lease({TaskType.IMAGE_TO_TEXT}, 5, 30, T0)
    await store.complete(tasks[0].id, leases[0].token, Solution(text="a"), "ocr", T0 + 1)
    await store.complete(tasks[1].id, leases[1].token, Solution(text="b"), "ocr", T0 + 1)
    await store.fail(
        tasks[2].id,
        leases[2].token,
        ErrorCode.CAPTCHA_UNSOLVABLE,
        "x",
        "ocr",
        T0 + 1,
        retry=False,
        max_attempts=3,
    )
    await store.fail_overdue(T0 + 200)
    assert await balance_of(store, key) == (8000, 2000)


async def test_sqlite_keeps_everything_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "capgate.db"
    store = SqliteStore(path)
    await store.open()
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    assert await reopened.get_task(task.id) == msgspec.structs.replace(task, body=None)
    (lease,) = await reopened.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert lease.task.body == PNG  # the image survived too
    assert await balance_of(reopened, key) == (4000, 0)
    await reopened.close()


async def test_an_incorrect_report_refunds_once_and_the_first_verdict_stands(
    store: Store,
) -> None:
    alice, bob = await new_key(store, 5000, "alice"), await new_key(store, 5000, "bob")
    task = await create(store, alice.id, IMAGE, 1000, "ip", T0, T0 + 120)
    reported = await store.report(task.id, alice.id, correct=False)
    assert reported is not None and reported.verdict is None  # Not ready: nothing changes.
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    await store.complete(task.id, lease.token, Solution(text="x"), "ocr", T0 + 1)
    assert await balance_of(store, alice) == (4000, 1000)
    assert await store.report(task.id, bob.id, correct=False) is None
    assert await balance_of(store, alice) == (4000, 1000)
    reported = await store.report(task.id, alice.id, correct=False)
    assert reported is not None and reported.verdict is False
    assert await balance_of(store, alice) == (5000, 0)
    again = await store.report(task.id, alice.id, correct=False)
    assert again is not None and again.verdict is False
    changed_mind = await store.report(task.id, alice.id, correct=True)
    assert changed_mind is not None and changed_mind.verdict is False
    assert await balance_of(store, alice) == (5000, 0)


async def test_a_correct_report_keeps_the_charge(store: Store) -> None:
    key = await new_key(store, 5000)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    await store.complete(task.id, lease.token, Solution(text="x"), "ocr", T0 + 1)
    reported = await store.report(task.id, key.id, correct=True)
    assert reported is not None and reported.verdict is True
    assert await balance_of(store, key) == (4000, 1000)


async def test_a_key_keeps_its_default_dialect(store: Store) -> None:
    key = await store.create_key("cs", hash_secret("cs"), 0, T0, dialect="capsolver")
    assert key.dialect == "capsolver"
    found = await store.key_by_hash(hash_secret("cs"))
    assert found is not None and found.dialect == "capsolver"
    plain = await new_key(store)
    assert plain.dialect is None


async def test_a_retried_lease_returns_the_same_tasks(store: Store) -> None:
    key = await new_key(store)
    tasks = [await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120) for _ in range(3)]
    first = await store.lease({TaskType.IMAGE_TO_TEXT}, 2, 30, T0, token="w1:req-1")
    assert [lease.task.id for lease in first] == [tasks[0].id, tasks[1].id]
    again = await store.lease({TaskType.IMAGE_TO_TEXT}, 2, 30, T0 + 1, token="w1:req-1")
    assert [(x.task.id, x.token, x.expires_at) for x in again] == [
        (x.task.id, x.token, x.expires_at) for x in first
    ]
    assert all(x.task.attempts == 1 for x in again)
    other = await store.lease({TaskType.IMAGE_TO_TEXT}, 2, 30, T0 + 1, token="w1:req-2")
    assert [lease.task.id for lease in other] == [tasks[2].id]
    # Once the leases are gone, the same request id leases afresh.
    await store.requeue_expired_leases(T0 + 40, 3)
    later = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0 + 41, token="w1:req-1")
    assert [lease.task.id for lease in later] == [tasks[0].id]
    assert later[0].task.attempts == 2


async def test_worker_keys_are_marked(store: Store) -> None:
    worker = await store.create_key("w", hash_secret("w"), 0, T0, worker=True)
    assert worker.worker is True
    found = await store.key_by_hash(hash_secret("w"))
    assert found is not None and found.worker is True
    assert (await new_key(store)).worker is False


async def test_an_idempotency_key_creates_and_charges_once(store: Store) -> None:
    key = await new_key(store, 5000)
    first = await store.create_task(
        key.id, IMAGE, 1000, "ip", T0, T0 + 120, T0 + DAY, ("retry-1", b"fingerprint")
    )
    again = await store.create_task(
        key.id, IMAGE, 1000, "ip", T0 + 1, T0 + 121, T0 + DAY, ("retry-1", b"fingerprint")
    )
    assert again.id == first.id
    assert await balance_of(store, key) == (4000, 0)
    with pytest.raises(CapgateError) as caught:
        await store.create_task(
            key.id, IMAGE, 1000, "ip", T0 + 2, T0 + 122, T0 + DAY, ("retry-1", b"other task")
        )
    assert caught.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    other_key = await new_key(store, 5000, "other")
    theirs = await store.create_task(
        other_key.id, IMAGE, 1000, "ip", T0, T0 + 120, T0 + DAY, ("retry-1", b"fingerprint")
    )
    assert theirs.id != first.id
    assert await store.queue_depth() == 2


async def test_in_flight_counts_a_keys_unfinished_tasks(store: Store) -> None:
    alice, bob = await new_key(store, name="alice"), await new_key(store, name="bob")
    for _ in range(3):
        await create(store, alice.id, IMAGE, 1, "ip", T0, T0 + 120)
    await create(store, bob.id, IMAGE, 1, "ip", T0, T0 + 120)
    (lease,) = await store.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await store.in_flight(alice.id) == 3
    await store.complete(lease.task.id, lease.token, Solution(text="x"), "ocr", T0 + 1)
    assert (await store.in_flight(alice.id), await store.in_flight(bob.id)) == (2, 1)


async def test_one_keys_flood_never_starves_another_key(store: Store) -> None:
    flood, quiet, third = [await new_key(store, 10**9, name) for name in ("f", "q", "t")]
    flooded = [await create(store, flood.id, IMAGE, 1, "ip", T0, T0 + 120) for _ in range(40)]
    late = await create(store, quiet.id, IMAGE, 1, "ip", T0 + 1, T0 + 120)
    last = await create(store, third.id, IMAGE, 1, "ip", T0 + 2, T0 + 120)
    # One lease of three: the flood's oldest, then the quiet keys' only tasks.
    leased = await store.lease({TaskType.IMAGE_TO_TEXT}, 3, 30, T0 + 3)
    assert [lease.task.id for lease in leased] == [flooded[0].id, late.id, last.id]
    # With only the flood left, it gets everything, oldest first.
    leased = await store.lease({TaskType.IMAGE_TO_TEXT}, 5, 30, T0 + 3)
    assert [lease.task.id for lease in leased] == [t.id for t in flooded[1:6]]
    assert await store.queue_depth() == 34


def test_fair_order_takes_rounds_across_keys() -> None:
    from capgate.store.base import fair_order

    queues = {1: [1, 2, 3, 9], 2: [5], 3: [4, 7]}
    assert fair_order(queues, 10) == [1, 4, 5, 2, 7, 3, 9]
    assert fair_order(queues, 4) == [1, 4, 5, 2]
    assert fair_order({}, 3) == [] and fair_order(queues, 0) == []


async def test_redis_indexes_queues_written_before_fair_leasing(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from capgate.store.redis import RedisStore

    store = RedisStore(redis_url, server_time=False)
    await store.open()
    key = await new_key(store)
    task = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    await store.close()
    # What an older capgate left: the queue by type only.
    client = aioredis.Redis.from_url(redis_url)
    old = [k async for k in client.scan_iter("{cg}:kq:*")]
    await client.delete(*old, "{cg}:qkeys:ImageToText")
    await client.aclose()
    reopened = RedisStore(redis_url, server_time=False)
    await reopened.open()
    (lease,) = await reopened.lease({TaskType.IMAGE_TO_TEXT}, 5, 30, T0)
    assert lease.task.id == task.id
    await reopened.close()


async def test_one_maintenance_holder_at_a_time(make_store: Callable[[], Store]) -> None:

    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    try:
        assert await first.hold_maintenance("a", 0.3)
        shared = not await second.hold_maintenance("b", 0.3)
        # Only a store that several nodes share has a lock; one process owns the others.
        assert shared == (type(first).__name__ == "RedisStore")
        if shared:
            assert await first.hold_maintenance("a", 0.3)  # the holder renews
            await asyncio.sleep(0.4)  # the holder stopped renewing: another takes over
            assert await second.hold_maintenance("b", 0.3)
            assert not await first.hold_maintenance("a", 0.3)
    finally:
        await first.close()
        await second.close()


@pytest.fixture
async def two_nodes(redis_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two Redis stores on one Redis, as two API nodes have (on Redis' clock)."""
    from capgate.store.redis import RedisStore

    first, second = RedisStore(redis_url), RedisStore(redis_url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def test_redis_measures_time_by_its_own_clock(two_nodes: tuple[Store, Store]) -> None:
    import time

    # Two nodes whose clocks are an hour fast and an hour slow.
    fast, slow = two_nodes
    key = await new_key(fast)
    ahead, behind = time.time() + 3600, time.time() - 3600
    task = await create(fast, key.id, IMAGE, 1, "ip", ahead, ahead + 120)
    real = time.time()
    assert abs(task.created_at - real) < 5 and abs(task.deadline_at - real - 120) < 5
    (lease,) = await slow.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, behind)
    assert abs(lease.expires_at - time.time() - 30) < 5
    # The fast node's clock says the lease ran out and the deadline passed an hour ago;
    # Redis' clock says neither.
    assert await fast.requeue_expired_leases(time.time() + 3600, 3) == []
    assert await fast.fail_overdue(time.time() + 3600) == []
    # And the slow node can still complete within the lease by Redis' clock.
    done = await slow.complete(task.id, lease.token, Solution(text="AB12"), "ocr", behind)
    assert done


async def test_redis_expires_a_task_itself_when_no_node_sweeps(redis_url: str) -> None:
    import redis.asyncio as aioredis

    from capgate.store.redis import RedisStore

    store = RedisStore(redis_url, server_time=False)
    await store.open()
    key = await new_key(store)
    kept = await store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + 600)
    gone = await store.create_task(key.id, IMAGE, 1, "ip", T0, T0 + 120, T0 + 600)
    client = aioredis.Redis.from_url(redis_url)
    # Kept for its retention plus an hour's grace, by Redis itself.
    ttl = await client.pttl(f"{{cg}}:task:{kept.id}")
    assert 3_600_000 + 590_000 < ttl <= 3_600_000 + 600_000
    # A task Redis expired is skipped by every sweep and never leased.
    await client.delete(f"{{cg}}:task:{gone.id}")
    await client.aclose()
    leases = await store.lease({TaskType.IMAGE_TO_TEXT}, 5, 30, T0)
    assert [lease.task.id for lease in leases] == [kept.id]
    assert await store.requeue_expired_leases(T0 + 60, 3) == [kept.id]
    assert await store.fail_overdue(T0 + 200) == [kept.id]
    await store.close()


@pytest.fixture
async def two_sqlite_connections(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """A reader and a writer on one file, as two `capgate serve --workers 2` processes."""
    reader, writer = SqliteStore(tmp_path / "shared.db"), SqliteStore(tmp_path / "shared.db")
    await reader.open()
    await writer.open()
    yield reader, writer
    await reader.close()
    await writer.close()


async def test_sqlite_reads_what_another_process_wrote(
    two_sqlite_connections: tuple[Store, Store],
) -> None:
    # A task one has read (and keeps in memory) and the other finishes is read finished.
    reader, writer = two_sqlite_connections
    key = await new_key(writer)
    task = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    seen = await reader.get_task(task.id)
    assert seen is not None and seen.status is TaskStatus.QUEUED
    seen.polls = 99  # a caller's copy is its own
    unchanged = await reader.get_task(task.id)
    assert unchanged is not None and unchanged.polls == 0
    (lease,) = await writer.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await writer.complete(task.id, lease.token, Solution(text="AB"), "ocr", T0 + 1)
    # The reader asks SQLite once per event-loop turn; a request that follows the write
    # comes in a later turn.
    await asyncio.sleep(0)
    done = await reader.get_task(task.id)
    assert done is not None and done.status is TaskStatus.READY and done.polls == 0
    await reader.add_polls({task.id: 2})
    again = await writer.get_task(task.id)
    assert again is not None and again.polls == 2


async def test_an_id_read_as_missing_is_found_once_created(store: Store) -> None:
    # A client may poll an id before it exists; a store that remembers "missing" must
    # forget it when that id is created.
    key = await new_key(store)
    first = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    assert await store.get_task(first.id + 1) is None
    assert await store.get_task(first.id + 1) is None
    second = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    assert second.id == first.id + 1
    found = await store.get_task(second.id)
    assert found is not None and found.status is TaskStatus.QUEUED


async def test_sqlite_finds_an_id_another_process_created(
    two_sqlite_connections: tuple[Store, Store],
) -> None:
    reader, writer = two_sqlite_connections
    key = await new_key(writer)
    first = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    assert await reader.get_task(first.id + 1) is None
    second = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    await asyncio.sleep(0)  # a later request, in a later event-loop turn
    found = await reader.get_task(second.id)
    assert found is not None and found.id == first.id + 1


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 3.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_redis_nodes_keep_copies_in_step_with_each_others_writes(
    two_nodes: tuple[Store, Store],
) -> None:

    writer, reader = two_nodes
    await _copies_stay_in_step(writer, reader)


async def _copies_stay_in_step(writer: Store, reader: Store) -> None:
    """The reader keeps a copy of what it read; the writer's writes and its own reach it."""
    from capgate.store.redis import RedisStore

    assert isinstance(reader, RedisStore)
    key = await new_key(writer)
    task = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    tracked = reader._tracked
    assert tracked is not None

    async def kept() -> bool:
        # The create's own change message may still be on its way and overtake this
        # read, which is then rightly not kept: read until one is.
        read = await reader.get_task(task.id)
        assert read is not None and read.status is TaskStatus.QUEUED
        return tracked.get(task.id) is not None

    await _eventually(kept)
    first = await reader.get_task(task.id)
    assert first is not None
    first.polls = 50  # a caller's copy is its own
    again = await reader.get_task(task.id)
    assert again is not None and again.polls == 0
    # Another node's write reaches this node's copy by Redis' message.
    (lease,) = await writer.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
    assert await writer.complete(task.id, lease.token, Solution(text="AB"), "ocr", T0 + 1)

    async def ready() -> bool:
        seen = await reader.get_task(task.id)
        return seen is not None and seen.status is TaskStatus.READY

    await _eventually(ready)
    # This node's own write is seen at once.
    await reader.add_polls({task.id: 3})
    polled = await reader.get_task(task.id)
    assert polled is not None and polled.polls == 3


async def test_redis_polls_of_one_task_share_one_read(
    two_nodes: tuple[Store, Store], redis_url: str
) -> None:
    # Under load a poll arrives during every round trip: if each started its own read and
    # only the latest could be kept, no copy would ever be kept. They wait for the one.
    import redis.asyncio as aioredis

    writer, reader = two_nodes
    key = await new_key(writer)
    task = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        await admin.config_resetstat()
        polls = await asyncio.gather(*(reader.get_task(task.id) for _ in range(50)))
        reads = (await admin.info("commandstats"))["cmdstat_hmget"]["calls"]
    finally:
        await admin.aclose()
    assert reads == 1
    assert all(p is not None and p.id == task.id and p.polls == 0 for p in polls)
    assert polls[0] is not None
    polls[0].polls = 7  # each caller's copy is its own
    assert all(p is not None and p.polls == 0 for p in polls[1:])
    again = await reader.get_task(task.id)
    assert again is not None and again.polls == 0


async def test_redis_a_poll_whose_shared_read_is_cancelled_reads_for_itself(
    two_nodes: tuple[Store, Store],
) -> None:
    writer, reader = two_nodes
    key = await new_key(writer)
    task = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
    first = asyncio.ensure_future(reader.get_task(task.id))
    await asyncio.sleep(0)  # its read is under way
    second = asyncio.ensure_future(reader.get_task(task.id))
    await asyncio.sleep(0)  # it waits for the first's read
    first.cancel()  # as when a client hangs up
    found = await asyncio.wait_for(second, 5)
    assert found is not None and found.id == task.id
    assert first.cancelled()


async def test_redis_store_logs_in_and_uses_the_database_its_url_names(redis_server: str) -> None:
    # Every connection the store opens (redis-py's pool, the shared pipelined one, the
    # tracking one) must authenticate and, where it reads or writes, select the database.
    import redis.asyncio as aioredis

    from capgate.store.redis import RedisStore

    admin = aioredis.Redis.from_url(f"{redis_server}/3")
    await admin.flushdb()
    await admin.acl_setuser(
        "capgate-test",
        enabled=True,
        passwords=["+s3cret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    store = RedisStore(redis_server.replace("redis://", "redis://capgate-test:s3cret@") + "/3")
    await store.open()
    try:
        assert store._tracked is not None and store._tracked.live
        # The tracking connection logged in as the URL's user too.
        clients = await admin.client_list()
        assert any(c["user"] == "capgate-test" and "t" in c["flags"] for c in clients), clients
        key = await new_key(store)
        task = await create(store, key.id, IMAGE, 1, "ip", T0, T0 + 120)
        found = await store.get_task(task.id)
        assert found is not None and found.id == task.id
        assert await admin.exists(f"{{cg}}:task:{task.id}") == 1  # in database 3
    finally:
        await store.close()
        await admin.acl_deluser("capgate-test")
        await admin.flushdb()
        await admin.aclose()


async def test_redis_over_tls_shares_reads_and_keeps_copies_in_step(tls_redis_url: str) -> None:
    # A rediss:// URL: redis-py's pool, the shared connection and the tracking connection
    # all speak TLS with the URL's settings (here, the test CA), and polls are still
    # served from copies that another node's write drops.
    from capgate.store.redis import RedisStore

    writer, reader = RedisStore(tls_redis_url), RedisStore(tls_redis_url)
    await writer.open()
    await reader.open()
    try:
        assert reader._tracked is not None and reader._tracked.live
        await writer.redis.flushdb()  # the session's TLS server is shared by tests
        await _copies_stay_in_step(writer, reader)
    finally:
        await writer.close()
        await reader.close()


async def test_redis_over_tls_checks_the_servers_certificate(tls_redis_url: str) -> None:
    from capgate.store.redis import RedisStore

    untrusting = RedisStore(tls_redis_url.partition("?")[0])  # no CA: the test CA is unknown
    with pytest.raises(Exception, match=r"(?i)certificate"):
        await untrusting.open()
    await untrusting.close()


async def test_redis_serves_no_copies_while_change_messages_are_lost(
    two_nodes: tuple[Store, Store], redis_url: str
) -> None:
    import redis.asyncio as aioredis

    from capgate.store.redis import RedisStore

    writer, reader = two_nodes
    assert isinstance(reader, RedisStore)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        key = await new_key(writer)
        task = await create(writer, key.id, IMAGE, 1, "ip", T0, T0 + 120)
        assert await reader.get_task(task.id) is not None
        tracked = reader._tracked
        assert tracked is not None and tracked.live and tracked.get(task.id) is not None
        await admin.client_kill_filter(_type="pubsub")

        async def dark() -> bool:
            return not tracked.live

        await _eventually(dark)
        assert tracked.get(task.id) is None
        (lease,) = await writer.lease({TaskType.IMAGE_TO_TEXT}, 1, 30, T0)
        assert await writer.complete(task.id, lease.token, Solution(text="AB"), "ocr", T0 + 1)
        seen = await reader.get_task(task.id)
        assert seen is not None and seen.status is TaskStatus.READY
        assert tracked.get(task.id) is None  # nothing kept while messages may be lost

        async def live_again() -> bool:
            return tracked.live

        await _eventually(live_again)
        assert await reader.get_task(task.id) is not None
        assert tracked.get(task.id) is not None
    finally:
        await admin.aclose()


# --- limits checked in the same step as the write ---------------------------------------


async def test_the_in_flight_limit_holds_for_concurrent_creates(store: Store) -> None:
    key = await new_key(store)
    creates = [
        store.create_task(key.id, IMAGE, 0, "ip", T0, T0 + 120, T0 + DAY, max_in_flight=5)
        for _ in range(40)
    ]
    outcomes = await asyncio.gather(*creates, return_exceptions=True)
    accepted = [o for o in outcomes if isinstance(o, Task)]
    refused = [o for o in outcomes if isinstance(o, CapgateError)]
    assert len(accepted) == 5 and len(refused) == 35
    assert {e.code for e in refused} == {ErrorCode.NO_SLOT}
    assert await store.in_flight(key.id) == 5
    # A finished task frees its slot.
    (lease,) = await store.lease([TaskType.IMAGE_TO_TEXT], 1, 30, T0 + 1)
    assert await store.complete(lease.task.id, lease.token, Solution(text="a"), "s", T0 + 2)
    again = await store.create_task(key.id, IMAGE, 0, "ip", T0, T0 + 120, T0 + DAY, max_in_flight=5)
    assert again.status is TaskStatus.QUEUED


async def test_concurrent_creates_spend_each_balance_exactly_once(store: Store) -> None:
    """Creates that arrive together (one batch, in SQLite one transaction) debit each key
    in order: those the balance covers are made, the rest refused, and other keys' creates
    and free ones beside them are untouched."""
    rich, poor = await new_key(store, 10_000, "rich"), await new_key(store, 3500, "poor")
    creates = []
    for _ in range(6):
        creates.append(store.create_task(poor.id, IMAGE, 1000, "ip", T0, T0 + 120, T0 + DAY))
        creates.append(store.create_task(rich.id, IMAGE, 1000, "ip", T0, T0 + 120, T0 + DAY))
        creates.append(store.create_task(poor.id, TOKEN_TASK, 0, "ip", T0, T0 + 120, T0 + DAY))
    outcomes = await asyncio.gather(*creates, return_exceptions=True)
    made = [o for o in outcomes if isinstance(o, Task)]
    refused = [o for o in outcomes if isinstance(o, CapgateError)]
    assert [o.code for o in refused] == [ErrorCode.ZERO_BALANCE] * 3
    paid_by_poor = [t for t in made if t.key_id == poor.id and t.cost]
    assert len(paid_by_poor) == 3 and len(made) == 3 + 6 + 6
    assert await balance_of(store, poor) == (500, 0)
    assert await balance_of(store, rich) == (4000, 0)
    assert await store.in_flight(poor.id) == 9


async def solved_tasks(store: Store, key: Key, n: int) -> list[Task]:
    tasks = [await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120) for _ in range(n)]
    for lease in await store.lease([TaskType.IMAGE_TO_TEXT], n, 30, T0 + 1):
        assert await store.complete(lease.task.id, lease.token, Solution(text="a"), "s", T0 + 2)
    return tasks


async def test_refunds_stop_at_the_keys_share_of_reports(store: Store) -> None:
    key = await new_key(store)
    tasks = await solved_tasks(store, key, 10)
    limit = RefundLimit(max_share=0.3, allowance=1)
    # 10 paid answers: the first refund is the allowance, then up to 30% of 10.
    for task in tasks[:3]:
        reported = await store.report(task.id, key.id, False, limit)
        assert reported is not None and reported.verdict is False
    with pytest.raises(CapgateError) as refused:
        await store.report(tasks[3].id, key.id, False, limit)
    assert refused.value.code is ErrorCode.REPORT_NOT_RECORDED
    after = await store.get_key(key.id)
    assert after is not None and (after.solved, after.refunds) == (10, 3)
    assert (after.balance, after.spent) == (10_000 - 7000, 7000)
    # Nothing was recorded on the refused one: a verdict of "correct" still counts.
    kept = await store.report(tasks[3].id, key.id, True, limit)
    assert kept is not None and kept.verdict is True


async def test_concurrent_reports_cannot_pass_the_share_together(store: Store) -> None:
    key = await new_key(store)
    tasks = await solved_tasks(store, key, 10)
    limit = RefundLimit(max_share=0.5, allowance=0)
    outcomes = await asyncio.gather(
        *(store.report(t.id, key.id, False, limit) for t in tasks), return_exceptions=True
    )
    assert sum(isinstance(o, Task) for o in outcomes) == 5
    after = await store.get_key(key.id)
    assert after is not None and after.refunds == 5 and after.balance == 10_000 - 5000


async def test_sqlite_adds_the_report_counters_to_an_older_database(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the keys table as the first release made it
        db.execute(
            "CREATE TABLE keys (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
            " key_hash BLOB NOT NULL UNIQUE, balance INTEGER NOT NULL,"
            " spent INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, dialect TEXT,"
            " worker INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute(
            "INSERT INTO keys (name, key_hash, balance, created_at) VALUES ('old', ?, 5, 1.0)",
            (hash_secret("old"),),
        )
    db.close()
    store = SqliteStore(path)
    await store.open()
    key = await store.key_by_hash(hash_secret("old"))
    assert key is not None and (key.balance, key.solved, key.refunds) == (5, 0, 0)
    await store.close()


# --- the spending ledger (Anti-Captcha's getSpendingStats) ----------------------------


async def answer(store: Store, task: Task, now: float) -> None:
    """Lease and answer one queued task at `now`."""
    (lease,) = await store.lease({task.type}, 1, 30, now)
    assert lease.task.id == task.id
    assert await store.complete(task.id, lease.token, Solution(text="x", token="t"), "s", now)


async def test_the_spending_ledger_counts_answers_by_hour_and_refunds_in_their_hour(
    store: Store,
) -> None:
    alice, bob = await new_key(store, 10_000, "alice"), await new_key(store, 10_000, "bob")
    hour = hour_of(T0)
    soft = TaskSpec(TaskType.IMAGE_TO_TEXT, {"softId": 42}, PNG)
    first = await create(store, alice.id, IMAGE, 1000, "1.1.1.1", T0, T0 + 120)
    await answer(store, first, T0 + 1)
    second = await create(store, alice.id, soft, 1000, "1.1.1.1", T0, T0 + 120)
    await answer(store, second, T0 + 2)
    free = await create(store, alice.id, TOKEN_TASK, 0, "2.2.2.2", T0, T0 + 120)
    await answer(store, free, T0 + 3)
    later = await create(store, alice.id, IMAGE, 1000, "1.1.1.1", T0 + 3600, T0 + 3720)
    await answer(store, later, T0 + 3601)
    failed = await create(store, alice.id, IMAGE, 1000, "1.1.1.1", T0, T0 + 10)
    await store.fail_overdue(T0 + 11)  # a failure is refunded: no spending
    await create(store, bob.id, IMAGE, 1000, "3.3.3.3", T0, T0 + 120)
    assert (await store.get_task(failed.id)) is not None
    # The report lands in the hour its task was answered in, however late it comes.
    assert await store.report(first.id, alice.id, correct=False) is not None

    lines = await store.spending(alice.id, hour, hour + 2 * 3600)
    assert lines == [
        Spending(hour, TaskType.IMAGE_TO_TEXT, "1.1.1.1", "", 1, 0),
        Spending(hour, TaskType.IMAGE_TO_TEXT, "1.1.1.1", "42", 1, 1000),
        # The free Turnstile answer is not there: the ledger is of money, and no balance
        # would bound the lines that free tasks could add.
        Spending(hour + 3600, TaskType.IMAGE_TO_TEXT, "1.1.1.1", "", 1, 1000),
    ]
    # Only hours that start inside the window, and only the key's own.
    assert await store.spending(alice.id, hour + 1, hour + 2 * 3600) == lines[2:]
    assert await store.spending(alice.id, hour, hour + 3600) == lines[:2]
    assert await store.spending(bob.id, hour, hour + 2 * 3600) == []


async def test_the_spending_ledger_outlives_the_tasks(store: Store) -> None:
    key = await new_key(store)
    task = await create(store, key.id, IMAGE, 1000, "ip", T0, T0 + 120)
    await answer(store, task, T0 + 1)
    await store.purge(T0 + 2 * DAY, 100)
    assert await store.get_task(task.id) is None
    hour = hour_of(T0)
    assert await store.spending(key.id, hour, hour + 3600) == [
        Spending(hour, TaskType.IMAGE_TO_TEXT, "ip", "", 1, 1000)
    ]


def test_soft_ids_read_as_anti_captcha_and_capsolver_send_them() -> None:
    assert soft_id_of({"softId": 30}) == "30"
    assert soft_id_of({"softId": "", "appId": "3E36E3CD"}) == "3E36E3CD"
    assert soft_id_of({"softId": True, "appId": None}) == ""
    assert soft_id_of({"softId": 7.0}) == "7"
    assert soft_id_of({"appId": "x" * 8000}) == "x" * 32  # each id is a ledger line


async def test_a_key_keeps_the_networks_it_may_be_used_from(store: Store) -> None:
    key = await store.create_key(
        "net", hash_secret("net"), 0, T0, allow_ips=["10.0.0.0/8", "2001:db8::/32"]
    )
    assert key.allow_ips == ["10.0.0.0/8", "2001:db8::/32"]
    found = await store.key_by_hash(hash_secret("net"))
    assert found is not None and found.allow_ips == ["10.0.0.0/8", "2001:db8::/32"]
    anywhere = await new_key(store)
    assert anywhere.allow_ips == []
