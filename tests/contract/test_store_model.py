"""A Hypothesis state machine drives the SQLite store, and the Redis store, each beside the
in-memory reference store through the same random operations (create, lease, extend,
complete, fail, poll, report, expire, time passing) and checks after every step that
they agree and that DESIGN.md's invariants hold: money moves exactly once, a task completes
at most once, nothing acknowledged disappears before its retention ends."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from capgate.keys import hash_secret
from capgate.model import (
    CapgateError,
    ErrorCode,
    Lease,
    Solution,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
)
from capgate.store import MemoryStore, SqliteStore, Store

T0 = 1_700_000_000.0
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 120
TYPES = {TaskType.IMAGE_TO_TEXT}
START_BALANCE = 5_000


class StoresAgree(RuleBasedStateMachine):
    """The reference store and a store under test, one clock, the same operations."""

    def make_subject(self) -> Store:
        """The store checked against the reference (SQLite here; see the Redis run below)."""
        return SqliteStore(Path(self.tmp.name) / "capgate.db")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.memory = MemoryStore()
        self.subject = self.make_subject()
        self.now = T0
        self.keys: list[int] = []
        self.task_ids: list[int] = []
        self.ready_solutions: dict[int, Solution] = {}
        for opened in self.stores:
            self.run(opened.open())
        for name in ("a", "b"):
            _, key = self.both(
                lambda s, name=name: s.create_key(name, hash_secret(name), START_BALANCE, T0)
            )
            self.keys.append(key.id)

    @property
    def stores(self) -> tuple[Store, Store]:
        return self.memory, self.subject

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def both(self, call: Any) -> Any:
        """Run the same call on both stores; they must answer alike (errors included).

        Lease tokens are random in each store, so answers are compared by what they say
        about tasks and money, not by token.
        """
        answers = []
        for store in self.stores:
            try:
                answers.append(("ok", self.run(call(store))))
            except CapgateError as error:
                answers.append(("error", error.code))
        assert _view(answers[0]) == _view(answers[1]), answers
        return answers[0]

    def teardown(self) -> None:
        for store in self.stores:
            self.run(store.close())
        self.loop.close()
        self.tmp.cleanup()

    # --- operations -------------------------------------------------------------------

    @rule(key=st.sampled_from([0, 1]), cost=st.sampled_from([0, 1000, 3000]))
    def create(self, key: int, cost: int) -> None:
        spec = TaskSpec(TaskType.IMAGE_TO_TEXT, {}, PNG)
        outcome, task = self.both(
            lambda s: s.create_task(
                self.keys[key], spec, cost, "ip", self.now, self.now + 120, self.now + 600
            )
        )
        if outcome == "ok":
            self.task_ids.append(task.id)
        else:
            assert task is ErrorCode.ZERO_BALANCE

    @rule(limit=st.integers(0, 3), seconds=st.sampled_from([5.0, 30.0]))
    def lease(self, limit: int, seconds: float) -> None:
        self.both(lambda s: s.lease(TYPES, limit, seconds, self.now))

    @rule(data=st.data())
    def complete_or_fail(self, data: st.DataObject) -> None:
        if not self.task_ids:
            return
        task_id = data.draw(st.sampled_from(self.task_ids))
        action = data.draw(st.sampled_from(["complete", "fail", "retry", "extend"]))
        for store in self.stores:
            task = self.run(store.get_task(task_id))
            token = task.lease_token if task is not None and task.lease_token else "stale"
            if action == "complete":
                self.run(store.complete(task_id, token, Solution(text="ok"), "ocr", self.now))
            elif action == "extend":
                self.run(store.extend_lease(task_id, token, self.now + 30, self.now))
            else:
                self.run(
                    store.fail(
                        task_id,
                        token,
                        ErrorCode.CAPTCHA_UNSOLVABLE,
                        "no",
                        "ocr",
                        self.now,
                        retry=action == "retry",
                        max_attempts=2,
                    )
                )

    @rule(data=st.data(), polls=st.integers(1, 3))
    def poll(self, data: st.DataObject, polls: int) -> None:
        if self.task_ids:
            task_id = data.draw(st.sampled_from(self.task_ids))
            self.both(lambda s: s.add_polls({task_id: polls, task_id + 100: 1}))

    @rule(data=st.data(), correct=st.booleans())
    def report(self, data: st.DataObject, correct: bool) -> None:
        if self.task_ids:
            task_id = data.draw(st.sampled_from(self.task_ids))
            key_id = self.run(self.memory.get_task(task_id))
            owner = key_id.key_id if key_id is not None else self.keys[0]
            self.both(lambda s: s.report(task_id, owner, correct))

    @rule(seconds=st.sampled_from([1.0, 10.0, 31.0, 130.0, 700.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.both(lambda s: s.requeue_expired_leases(self.now, 2))
        self.both(lambda s: s.fail_overdue(self.now))
        self.both(lambda s: s.purge(self.now, 1000))

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def stores_agree_on_every_task(self) -> None:
        for task_id in self.task_ids:
            memory, sqlite = (self.run(s.get_task(task_id)) for s in self.stores)
            if memory is None or sqlite is None:
                assert memory is None and sqlite is None
                continue
            for field in (
                "status",
                "attempts",
                "polls",
                "cost",
                "solution",
                "error_code",
                "verdict",
            ):
                assert getattr(memory, field) == getattr(sqlite, field), (field, memory, sqlite)

    @invariant()
    def money_moves_exactly_once(self) -> None:
        for key_id in self.keys:
            for store in self.stores:
                key = self.run(store.get_key(key_id))
                tasks = [self.run(store.get_task(t)) for t in self.task_ids]
                held = sum(
                    t.cost
                    for t in tasks
                    if t is not None and t.key_id == key_id and not t.status.is_final
                )
                assert key.balance + key.spent + held == START_BALANCE, (key, held)
                assert key.balance >= 0 and key.spent >= 0

    @invariant()
    def a_task_completes_at_most_once(self) -> None:
        for task_id in self.task_ids:
            task = self.run(self.memory.get_task(task_id))
            if task is None:
                continue
            if task.status is TaskStatus.READY:
                assert task.solution is not None
                earlier = self.ready_solutions.setdefault(task_id, task.solution)
                assert task.solution == earlier
            else:
                assert task_id not in self.ready_solutions


def _view(value: Any) -> Any:
    """What an answer says, without the per-store random parts (lease tokens)."""
    if isinstance(value, tuple):
        return tuple(_view(v) for v in value)
    if isinstance(value, list):
        return [_view(v) for v in value]
    if isinstance(value, Lease):
        return ("lease", _view(value.task), value.expires_at)
    if isinstance(value, Task):
        return (
            value.id,
            value.status,
            value.attempts,
            value.polls,
            value.cost,
            value.solution,
            value.error_code,
            value.verdict,
            value.lease_expires_at,
        )
    return value


MODEL_SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoresAgree = StoresAgree.TestCase
TestStoresAgree.settings = MODEL_SETTINGS


def test_the_redis_store_agrees_with_the_model(redis_url: str) -> None:
    """The same machine with the Redis store as the subject, on a real redis-server (an
    empty database for every example)."""
    import redis

    class RedisAgrees(StoresAgree):
        def make_subject(self) -> Store:
            from capgate.store.redis import RedisStore

            with redis.Redis.from_url(redis_url) as client:
                client.flushdb()
            return RedisStore(redis_url, server_time=False)

    run_state_machine_as_test(RedisAgrees, settings=MODEL_SETTINGS)
