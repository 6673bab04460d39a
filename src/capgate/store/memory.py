"""The in-memory reference store: the rules of the store interface in plain Python.

It keeps nothing across restarts; it is the model the durable stores are tested against
and a store for tests and throwaway servers. Every method runs without awaiting, so each
call is atomic on the event loop.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from capgate.model import (
    CapgateError,
    ErrorCode,
    Key,
    Lease,
    Solution,
    Task,
    TaskSpec,
    TaskStatus,
    TaskType,
)
from capgate.store.base import (
    SITE_FILES_KEEP,
    SITE_HISTORY_KEEP,
    RefundLimit,
    Spending,
    Store,
    fair_order,
    hour_of,
    idempotency_conflict,
    out_of_attempts,
    report_not_recorded,
    soft_id_of,
    timed_out,
    too_many_in_flight,
)
from capgate.store.sites import (
    DEMOTED,
    PROMOTED,
    REJECTED,
    RETIRED,
    SERVING,
    SiteCounters,
    SiteEvent,
    SiteLabel,
    SiteModel,
)

_COUNTERS = ("local", "upstream", "by_model", "saved", "audits", "audits_agreed", "reported_wrong")

# A ledger line's identity: key id, hour, task type, ip, soft id.
_Line = tuple[int, int, TaskType, str, str]


class MemoryStore(Store):
    """Tasks and keys in dicts."""

    def __init__(self) -> None:
        self._keys: dict[int, Key] = {}
        self._key_ids_by_hash: dict[bytes, int] = {}
        self._tasks: dict[int, Task] = {}
        self._idempotent: dict[tuple[int, str], tuple[int, bytes]] = {}
        self._next_key_id = 1
        self._next_task_id = 1
        self._spending: dict[_Line, list[int]] = {}  # line -> [volume, money]
        # The learning half (SiteStore): labels by site and task id; each site's versions
        # (oldest first), the bytes still kept, history (newest first) and counters; each
        # version's audit outcomes (oldest first); the locks (holder, until).
        self._labels: dict[str, dict[int, SiteLabel]] = {}
        self._models: dict[str, list[SiteModel]] = {}
        self._files: dict[tuple[str, int], tuple[bytes, bytes]] = {}
        self._history: dict[str, collections.deque[SiteEvent]] = {}
        self._counters: dict[str, dict[str, int]] = {}
        self._audits: dict[tuple[str, int], list[bool]] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    # --- keys -------------------------------------------------------------------------

    async def create_key(
        self,
        name: str,
        key_hash: bytes,
        balance: int,
        now: float,
        dialect: str | None = None,
        worker: bool = False,
        allow_ips: Sequence[str] = (),
        site: str | None = None,
    ) -> Key:
        if key_hash in self._key_ids_by_hash:
            raise ValueError("a key with this secret exists already")
        key = Key(self._next_key_id, name, key_hash, balance, 0, now, dialect, worker)
        key.allow_ips = list(allow_ips)
        key.site = site
        self._next_key_id += 1
        self._keys[key.id] = key
        self._key_ids_by_hash[key_hash] = key.id
        return _copy_key(key)

    async def key_by_hash(self, key_hash: bytes) -> Key | None:
        key_id = self._key_ids_by_hash.get(key_hash)
        return None if key_id is None else _copy_key(self._keys[key_id])

    async def get_key(self, key_id: int) -> Key | None:
        key = self._keys.get(key_id)
        return None if key is None else _copy_key(key)

    async def list_keys(self) -> list[Key]:
        return [_copy_key(k) for k in sorted(self._keys.values(), key=lambda k: k.id)]

    async def add_balance(self, key_id: int, amount: int) -> Key | None:
        key = self._keys.get(key_id)
        if key is None:
            return None
        key.balance += amount
        return _copy_key(key)

    # --- tasks ------------------------------------------------------------------------

    async def create_task(
        self,
        key_id: int,
        spec: TaskSpec,
        cost: int,
        ip: str,
        now: float,
        deadline_at: float,
        expires_at: float,
        idempotency: tuple[str, bytes] | None = None,
        max_in_flight: int = 0,
    ) -> Task:
        if idempotency is not None:
            earlier = self._idempotent.get((key_id, idempotency[0]))
            if earlier is not None and earlier[0] in self._tasks:
                if earlier[1] != idempotency[1]:
                    raise idempotency_conflict(idempotency[0])
                return _copy_task(self._tasks[earlier[0]])
        key = self._keys[key_id]
        if max_in_flight > 0 and self._in_flight(key_id) >= max_in_flight:
            raise too_many_in_flight(max_in_flight)
        if cost > 0 and key.balance < cost:
            raise CapgateError(ErrorCode.ZERO_BALANCE, "balance too low for this task")
        key.balance -= cost
        task = Task(
            id=self._next_task_id,
            key_id=key_id,
            type=spec.type,
            params=dict(spec.params),
            body=spec.body,
            status=TaskStatus.QUEUED,
            created_at=now,
            deadline_at=deadline_at,
            cost=cost,
            ip=ip,
            expires_at=expires_at,
        )
        self._next_task_id += 1
        self._tasks[task.id] = task
        if idempotency is not None:
            self._idempotent[(key_id, idempotency[0])] = (task.id, idempotency[1])
        return _copy_task(task)

    async def get_task(self, task_id: int) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None:
            return None
        copy = _copy_task(task)
        copy.body = None
        return copy

    async def add_polls(self, counts: Mapping[int, int]) -> None:
        for task_id, polls in counts.items():
            task = self._tasks.get(task_id)
            if task is not None:
                task.polls += polls

    async def report(
        self, task_id: int, key_id: int, correct: bool, limit: RefundLimit | None = None
    ) -> Task | None:
        task = self._tasks.get(task_id)
        if task is None or task.key_id != key_id:
            return None
        if task.status is TaskStatus.READY and task.verdict is None:
            key = self._keys[key_id]
            refund = not correct and task.cost > 0
            if refund and limit is not None and not limit.allows(key.refunds, key.solved):
                raise report_not_recorded(key.refunds, key.solved)
            task.verdict = correct
            if refund:
                key.balance += task.cost
                key.spent -= task.cost
                key.refunds += 1
                line = self._spending.get(_line_of(task, task.finished_at or task.created_at))
                if line is not None:
                    line[1] -= task.cost
        return _copy_task(task)

    async def lease(
        self,
        types: Collection[TaskType],
        limit: int,
        lease_seconds: float,
        now: float,
        token: str | None = None,
    ) -> list[Lease]:
        if token is not None:
            held = [
                t
                for t in sorted(self._tasks.values(), key=lambda t: t.id)
                if t.status is TaskStatus.RUNNING
                and t.lease_token == token
                and t.lease_expires_at is not None
                and t.lease_expires_at > now
            ]
            if held:
                return [Lease(_copy_task(t), token, t.lease_expires_at or now) for t in held]
        leases: list[Lease] = []
        if limit <= 0:
            return leases
        token = token or secrets.token_hex(8)
        queues: dict[int, list[int]] = {}
        for task in sorted(self._tasks.values(), key=lambda t: t.id):
            if task.status is TaskStatus.QUEUED and task.type in types:
                queues.setdefault(task.key_id, []).append(task.id)
        for task_id in fair_order(queues, limit):
            task = self._tasks[task_id]
            task.status = TaskStatus.RUNNING
            task.attempts += 1
            task.started_at = task.started_at if task.started_at is not None else now
            task.lease_token = token
            task.lease_expires_at = now + lease_seconds
            leases.append(Lease(_copy_task(task), token, task.lease_expires_at))
        return sorted(leases, key=lambda lease: lease.task.id)

    def _held(self, task_id: int, token: str, now: float) -> Task | None:
        task = self._tasks.get(task_id)
        if (
            task is None
            or task.status is not TaskStatus.RUNNING
            or task.lease_token != token
            or task.lease_expires_at is None
            or task.lease_expires_at <= now
        ):
            return None
        return task

    async def extend_lease(
        self,
        task_id: int,
        token: str,
        expires_at: float,
        now: float,
        *,
        count_attempt: bool = False,
    ) -> bool:
        task = self._held(task_id, token, now)
        if task is None:
            return False
        task.lease_expires_at = max(expires_at, now)
        if count_attempt:
            task.attempts += 1
        return True

    async def held_image(self, task_id: int, token: str, now: float) -> bytes | None:
        task = self._held(task_id, token, now)
        return None if task is None else task.body

    async def complete(
        self, task_id: int, token: str, solution: Solution, solver: str, now: float
    ) -> bool:
        task = self._held(task_id, token, now)
        if task is None:
            return False
        task.status = TaskStatus.READY
        task.solution = solution
        task.solver = solver
        task.finished_at = now
        task.body = None
        task.lease_token = None
        task.lease_expires_at = None
        key = self._keys[task.key_id]
        key.spent += task.cost
        key.solved += task.cost > 0
        if task.cost > 0:  # The ledger is of money: free answers stay out.
            line = self._spending.setdefault(_line_of(task, now), [0, 0])
            line[0] += 1
            line[1] += task.cost
        return True

    async def fail(
        self,
        task_id: int,
        token: str,
        code: ErrorCode,
        description: str,
        solver: str,
        now: float,
        *,
        retry: bool,
        max_attempts: int,
    ) -> bool:
        task = self._held(task_id, token, now)
        if task is None:
            return False
        task.solver = solver
        if retry and task.attempts < max_attempts:
            self._requeue(task)
        else:
            self._fail(task, code, description, now)
        return True

    async def requeue_expired_leases(self, now: float, max_attempts: int) -> list[int]:
        moved: list[int] = []
        for task in self._tasks.values():
            if (
                task.status is TaskStatus.RUNNING
                and task.lease_expires_at is not None
                and task.lease_expires_at <= now
            ):
                moved.append(task.id)
                if task.attempts < max_attempts:
                    self._requeue(task)
                else:
                    self._fail(
                        task, ErrorCode.CAPTCHA_UNSOLVABLE, out_of_attempts(task.attempts), now
                    )
        return sorted(moved)

    async def fail_overdue(self, now: float) -> list[int]:
        failed: list[int] = []
        for task in self._tasks.values():
            if not task.status.is_final and task.deadline_at <= now:
                self._fail(
                    task, ErrorCode.TASK_TIMEOUT, timed_out(task.deadline_at - task.created_at), now
                )
                failed.append(task.id)
        return sorted(failed)

    async def purge(self, now: float, limit: int) -> int:
        doomed = [t.id for t in self._tasks.values() if t.expires_at <= now][:limit]
        for task_id in doomed:
            del self._tasks[task_id]
        if doomed:
            self._idempotent = {k: v for k, v in self._idempotent.items() if v[0] in self._tasks}
        return len(doomed)

    async def in_flight(self, key_id: int) -> int:
        return self._in_flight(key_id)

    def _in_flight(self, key_id: int) -> int:
        return sum(1 for t in self._tasks.values() if t.key_id == key_id and not t.status.is_final)

    async def queue_depth(self) -> int:
        return sum(1 for t in self._tasks.values() if t.status is TaskStatus.QUEUED)

    async def recent_tasks(self, limit: int) -> list[Task]:
        tasks = [_copy_task(self._tasks[i]) for i in sorted(self._tasks, reverse=True)[:limit]]
        for task in tasks:
            task.body = None
        return tasks

    async def spending(self, key_id: int, since: float, until: float) -> list[Spending]:
        return sorted(
            (
                Spending(hour, task_type, ip, soft_id, volume, money)
                for (owner, hour, task_type, ip, soft_id), (volume, money) in self._spending.items()
                if owner == key_id and since <= hour < until
            ),
            key=lambda s: (s.hour, s.type.value, s.ip, s.soft_id),
        )

    # --- sites (SiteStore) ------------------------------------------------------------

    def _seen(self, site: str) -> dict[str, int]:
        assert len(site) <= 255, "a site name is at most 255 characters"
        return self._counters.setdefault(site, dict.fromkeys(_COUNTERS, 0))

    def _event(
        self, site: str, at: float, kind: str, version: int, reason: str, labels: int
    ) -> None:
        history = self._history.setdefault(site, collections.deque(maxlen=SITE_HISTORY_KEEP))
        history.appendleft(SiteEvent(site, at, kind, version, reason, labels))

    def _last_version(self, site: str) -> int:
        models = self._models.get(site)
        return models[-1].version if models else 0

    async def add_site_label(
        self, site: str, task_id: int, image: bytes, text: str, now: float, keep: int
    ) -> int:
        self._seen(site)
        labels = self._labels.setdefault(site, {})
        labels[task_id] = SiteLabel(task_id, image, text, now)
        if len(labels) > keep:
            for oldest in sorted(labels)[: len(labels) - max(0, keep)]:
                del labels[oldest]
        return len(labels)

    async def forget_site_label(self, site: str, task_id: int) -> bool:
        return self._labels.get(site, {}).pop(task_id, None) is not None

    async def site_labels(self, site: str) -> list[SiteLabel]:
        labels = self._labels.get(site, {})
        return [labels[task_id] for task_id in sorted(labels)]

    async def publish_model(
        self,
        site: str,
        onnx: bytes,
        spec: bytes,
        threshold: float,
        precision: float,
        scores: Mapping[str, Any],
        now: float,
        reason: str,
        labels: int,
    ) -> SiteModel:
        self._seen(site)
        models = self._models.setdefault(site, [])
        version = self._last_version(site) + 1
        for i, earlier in enumerate(models):
            if earlier.state == SERVING:
                models[i] = dataclasses.replace(earlier, state=RETIRED)
        model = SiteModel(site, version, SERVING, now, threshold, precision, dict(scores))
        models.append(model)
        self._files[(site, version)] = (onnx, spec)
        for old in models[:-SITE_FILES_KEEP]:  # neither serving (the new one) nor among the newest
            self._files.pop((site, old.version), None)
            self._audits.pop((site, old.version), None)
        self._event(site, now, PROMOTED, version, reason, labels)
        return model

    async def reject_candidate(self, site: str, reason: str, now: float, labels: int) -> None:
        self._seen(site)
        self._event(site, now, REJECTED, self._last_version(site) + 1, reason, labels)

    async def demote_model(self, site: str, version: int, reason: str, now: float) -> bool:
        models = self._models.get(site, [])
        for i, model in enumerate(models):
            if model.version == version and model.state == SERVING:
                models[i] = dataclasses.replace(model, state=DEMOTED)
                self._event(site, now, DEMOTED, version, reason, 0)
                return True
        return False

    async def serving_models(self) -> dict[str, SiteModel]:
        return {
            site: model
            for site, models in self._models.items()
            for model in models
            if model.state == SERVING
        }

    async def site_models(self, site: str) -> list[SiteModel]:
        return list(reversed(self._models.get(site, [])))

    async def model_files(self, site: str, version: int) -> tuple[bytes, bytes] | None:
        return self._files.get((site, version))

    async def site_history(self, site: str, limit: int = 50) -> list[SiteEvent]:
        return list(self._history.get(site, ()))[: max(0, limit)]

    async def count_answer(self, site: str, local: bool, by_model: bool, saved: int) -> None:
        counters = self._seen(site)
        if local:
            counters["local"] += 1
            counters["by_model"] += by_model
            counters["saved"] += saved
        else:
            counters["upstream"] += 1

    async def record_audit(
        self, site: str, version: int, agreed: bool, now: float, window: int, report: bool
    ) -> list[bool]:
        counters = self._seen(site)
        if report:
            counters["reported_wrong"] += 1
        else:
            counters["audits"] += 1
            counters["audits_agreed"] += agreed
        outcomes = self._audits.setdefault((site, version), [])
        if not report:
            outcomes.append(agreed)
        del outcomes[: max(0, len(outcomes) - max(0, window))]
        return list(outcomes)

    async def site_counters(self) -> list[SiteCounters]:
        return [
            SiteCounters(site, len(self._labels.get(site, {})), **self._counters[site])
            for site in sorted(self._counters)
        ]

    async def hold_lock(self, name: str, holder: str, seconds: float, now: float) -> bool:
        held = self._locks.get(name)
        if held is not None and held[0] != holder and held[1] > now:
            return False
        self._locks[name] = (holder, now + seconds)
        return True

    async def release_lock(self, name: str, holder: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == holder:
            del self._locks[name]

    # --- transitions ------------------------------------------------------------------

    @staticmethod
    def _requeue(task: Task) -> None:
        task.status = TaskStatus.QUEUED
        task.lease_token = None
        task.lease_expires_at = None

    def _fail(self, task: Task, code: ErrorCode, description: str, now: float) -> None:
        task.status = TaskStatus.FAILED
        task.error_code = code
        task.error_description = description
        task.finished_at = now
        task.body = None
        task.lease_token = None
        task.lease_expires_at = None
        self._keys[task.key_id].balance += task.cost


def _line_of(task: Task, answered_at: float) -> _Line:
    return (task.key_id, hour_of(answered_at), task.type, task.ip, soft_id_of(task.params))


def _copy_task(task: Task) -> Task:
    # Callers get snapshots, as they would from a real database.
    copy = Task(**{f: getattr(task, f) for f in task.__struct_fields__})
    copy.params = dict(task.params)
    return copy


def _copy_key(key: Key) -> Key:
    return Key(
        key.id,
        key.name,
        key.key_hash,
        key.balance,
        key.spent,
        key.created_at,
        key.dialect,
        key.worker,
        key.solved,
        key.refunds,
        list(key.allow_ips),
        key.site,
    )
