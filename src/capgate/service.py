"""The business rules: authenticate, validate, price, enforce limits, create and read tasks.

This is the only caller of the store from the HTTP side, and it speaks only internal types.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from typing import Any

import msgspec

from capgate.callbacks import Deliverer, check_url
from capgate.clock import Clock
from capgate.completions import Completions
from capgate.config import Settings
from capgate.dispatch import THRESHOLD_FIELD, recognizing_threshold
from capgate.finished import FinishedTasks
from capgate.images import check_image
from capgate.keys import hash_secret
from capgate.labels import LabelKeeper
from capgate.learning.loop import Learning
from capgate.limits import RateLimiter
from capgate.metrics import Metrics
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
from capgate.polls import PollCounter
from capgate.router import Router
from capgate.store.base import HOUR, RefundLimit, Store, hour_of

log = logging.getLogger("capgate.service")

_KEY_CACHE_SECONDS = 1.0
_KEY_CACHE_SIZE = 10_000
_LAST_POLLS_SIZE = 100_000  # tasks whose last poll time is kept (min_poll_interval_seconds)
_MAX_WORKER_LEASE = 100
_MAX_IDEMPOTENCY_KEY = 255
_MAX_WORKER_LEASE_SECONDS = 600.0
# Anti-Captcha caches getQueueStats for 10 s; so does capgate (a store count per call).
_QUEUE_STATS_SECONDS = 10.0
_SPENDING_HOURS = 24  # getSpendingStats: "statistics for a 24 hour period", by hour


class QueueStats(msgspec.Struct, frozen=True):
    """How a queue stands here: solvers free to take its tasks, load, price, speed."""

    waiting: int  # solvers of this type in service while nothing waits for them
    load: float  # percent: the queue's share of queued tasks and solvers in service
    bid: int  # what a task of this type costs the client, in micro-units
    speed: float  # mean seconds a solver of this type took per task (0 before any)
    total: int  # solvers of this type, in service or not


class SpendingRecord(msgspec.Struct, frozen=True):
    """One hour of a key's spending: answered tasks and the money they cost."""

    date_from: int
    date_till: int
    volume: int
    money: int


class Service:
    """What a client can ask of capgate, whatever dialect it speaks."""

    def __init__(
        self,
        store: Store,
        router: Router,
        settings: Settings,
        clock: Clock,
        on_created: Callable[[Task], None] | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.settings = settings
        self.clock = clock
        self._on_created = on_created
        self.completions = Completions()
        self.polls = PollCounter(store)
        self.finished = FinishedTasks()
        self.metrics = Metrics()
        self.deliverer: Deliverer | None = None
        self.rate_limiter = RateLimiter(settings.max_creates_per_second)
        # Free tasks (no debit) have quotas of their own: money cannot bound them.
        self.free_rate_limiter = RateLimiter(settings.free_tasks_per_second)
        # By secret, so a hit costs no hashing (a second's worth, in this process only).
        self._known_keys: dict[str, tuple[float, Key]] = {}
        self._refreshing: set[str] = set()  # secrets whose key is being read again
        self._background: set[asyncio.Future[None]] = set()
        self._last_polls: dict[int, float] = {}  # task id -> when it was last polled
        self._queue_stats: dict[TaskType | None, tuple[float, QueueStats]] = {}
        # Names this process when nodes that share a store take turns at the sweeps.
        self.node = secrets.token_hex(8)
        # The learning loop (docs/learning.md), which hears of reports of wrong answers.
        self.learning: Learning | None = None
        # Upstream answers kept for training (opt-in).
        self.labels = (
            LabelKeeper(settings.data / "labels") if settings.keep_upstream_labels else None
        )

    async def authenticate(self, secret: str, ip: str) -> Key:
        """The client key a secret belongs to, used from `ip`; else KEY_DOES_NOT_EXIST, or
        IP_NOT_ALLOWED outside the key's networks.

        A worker key is not a client key: it may lease and answer tasks, never create,
        read or pay for them (keys have one role each).
        """
        key = await self.lookup_key(secret)
        if key.worker:
            raise CapgateError(
                ErrorCode.KEY_DOES_NOT_EXIST, "This is a worker key; it cannot be used as a client"
            )
        _check_address(key, ip)
        return key

    async def lookup_key(self, secret: str) -> Key:
        """The key a secret belongs to, whatever its role, or KEY_DOES_NOT_EXIST.

        Found keys are remembered for a second: a request may authenticate twice (the root
        first asks which dialect the key speaks), and a balance read from here is only ever
        a hint; the store checks balances atomically. When a key's second is up, one
        request reads it again while the others go on with the old copy for at most one
        more second (a busy key's every request at once used to read it).
        """
        now = time.monotonic()
        # Cached by the whole string as sent: a suffixed secret is cached with its options.
        cached = self._known_keys.get(secret)
        if cached is not None:
            fresh_until, known = cached
            if fresh_until > now:
                return known
            if secret in self._refreshing and now < fresh_until + _KEY_CACHE_SECONDS:
                return known
        self._refreshing.add(secret)
        try:
            key = await self._key_of(secret)
        finally:
            self._refreshing.discard(secret)
        if key is None:
            self._known_keys.pop(secret, None)
            raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "The API key does not exist")
        if len(self._known_keys) >= _KEY_CACHE_SIZE:
            self._known_keys.clear()
        self._known_keys[secret] = (now + _KEY_CACHE_SECONDS, key)
        return key

    async def _key_of(self, sent: str) -> Key | None:
        """The stored key of a secret as sent, with the options of a 2Captcha-style suffix
        (`SECRET__recognizingthreshold_70`, parts after the first `__`; see
        `_key_options`). A chosen secret that itself holds `__` is still found whole."""
        secret, _, suffix = sent.partition("__")
        tries = [(secret, _key_options(suffix))] if suffix else []
        tries.append((sent, {}))
        for candidate, options in tries:
            digest = hash_secret(candidate)
            key = await self.store.key_by_hash(digest)
            # The lookup is by digest; the final comparison is constant-time all the same.
            if key is not None and hmac.compare_digest(key.key_hash, digest):
                return msgspec.structs.replace(key, options=options) if options else key
        return None

    async def create_task(
        self,
        key: Key,
        spec: TaskSpec,
        ip: str,
        retention_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Validate, price and durably queue a task; charged only if it succeeds.

        `retention_seconds` overrides the server's retention for dialects whose vendor
        documents its own (CapSolver keeps results 5 minutes). With `idempotency_key`, a
        retried create returns the task the first one made, and charges once.
        """
        if spec.type is TaskType.IMAGE_TO_TEXT:
            if spec.body is None:
                raise CapgateError(ErrorCode.ZERO_CAPTCHA_FILESIZE, "The task has no image")
            check_image(spec.body, self.settings.max_image_bytes, self.settings.max_image_pixels)
            if key.options:  # the key suffix's options, where the task sets none of its own
                spec = msgspec.structs.replace(spec, params={**key.options, **spec.params})
            _check_threshold(spec.params)
        _check_fields(spec.params, self.settings.max_field_chars)
        callback = spec.params.get("callbackUrl")
        if callback is not None:
            if not isinstance(callback, str):
                raise CapgateError(ErrorCode.BAD_REQUEST, "callbackUrl must be a string")
            check_url(callback, self.settings.callback_hosts)
        unknown = self.router.unknown_provider(spec.params)
        if unknown is not None:
            raise CapgateError(
                ErrorCode.TASK_NOT_SUPPORTED, f"Provider {unknown!r} is not configured here"
            )
        solver = self.router.choose(spec.type, spec.params)
        if solver is None:
            raise CapgateError(
                ErrorCode.TASK_NOT_SUPPORTED,
                f"No solver here accepts {spec.type.value} tasks with these parameters",
            )
        cost = 0 if solver.free else self.settings.prices[spec.type]
        max_in_flight = self._check_limits(key, spec, cost)
        # The store refuses a short balance atomically, before anything is queued.
        now = self.clock.now()
        retention = (
            self.settings.retention_seconds if retention_seconds is None else retention_seconds
        )
        idempotency = None
        if idempotency_key:
            if len(idempotency_key) > _MAX_IDEMPOTENCY_KEY:
                raise CapgateError(
                    ErrorCode.BAD_REQUEST,
                    f"The idempotency key is longer than {_MAX_IDEMPOTENCY_KEY} characters",
                )
            idempotency = (idempotency_key, _fingerprint(spec))
        task = await self.store.create_task(
            key.id,
            spec,
            cost,
            ip,
            now,
            now + self.settings.task_deadline_seconds,
            now + retention,
            idempotency,
            max_in_flight,
        )
        self.metrics.task_created(task.type.value)
        if self._on_created is not None:
            self._on_created(task)
        return task

    async def check_group(self, key: Key, specs: Sequence[TaskSpec]) -> None:
        """Refuse, before any is created, a group of tasks (CapSolver's several images)
        that the key's limits or balance would stop partway: a group is then made whole
        or not at all, unless the key's other requests race it."""
        count, settings = len(specs), self.settings
        costs = [settings.prices[spec.type] for spec in specs]
        limiters = [self.rate_limiter] + ([self.free_rate_limiter] if 0 in costs else [])
        for limiter in limiters:
            tokens = limiter.peek(key.id)
            if tokens is not None and tokens[1] < count:
                raise CapgateError(
                    ErrorCode.NO_SLOT,
                    f"Too many tasks: this key may create {limiter.rate:g} per second,"
                    f" and this request makes {count}",
                )
        limit = settings.max_tasks_in_flight
        if limit > 0 and await self.store.in_flight(key.id) + count > limit:
            raise CapgateError(
                ErrorCode.NO_SLOT,
                f"Too many tasks in flight: this key may have {limit}, and this request"
                f" makes {count}",
            )
        current = await self.store.get_key(key.id)
        if current is not None and current.balance < sum(costs):
            raise CapgateError(ErrorCode.ZERO_BALANCE, "balance too low for these tasks")

    def _check_limits(self, key: Key, spec: TaskSpec, cost: int) -> int:
        """Take the key's rate tokens; the tasks-in-flight limit for the store to enforce
        (0: none) in the same step as the insert.

        A free task (no debit: test site keys, a type priced 0) is bounded by quotas of
        its own, since no balance runs out: a rate, a size and a number in flight.
        """
        settings = self.settings
        limits = [settings.max_tasks_in_flight]
        if cost == 0:
            size = len(msgspec.json.encode(spec.params)) + len(spec.body or b"")
            if size > settings.free_task_max_bytes:
                raise CapgateError(
                    ErrorCode.BAD_REQUEST,
                    f"A free task may carry {settings.free_task_max_bytes} bytes of fields;"
                    f" this one has {size}",
                )
            limits.append(settings.free_tasks_in_flight)
            self.free_rate_limiter.take(key.id)
        self.rate_limiter.take(key.id)
        return min((n for n in limits if n > 0), default=0)

    async def get_result(self, key: Key, task_id: int) -> Task:
        """The key's own task, counting the poll; another key's task is 'not found'.

        A finished task is read once and then answered from memory (capgate.finished);
        its polls are counted here and written in batches (capgate.polls).
        """
        now = self.clock.now()
        cached = self.finished.get(task_id)
        task = cached if cached is not None else await self.store.get_task(task_id)
        if task is not None and now >= task.expires_at:
            self.finished.drop(task_id)
            task = None
        # Only the owner's polls count (a stranger must not use up the owner's cap).
        if task is None or task.key_id != key.id:
            raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"Task {task_id} does not exist")
        self._check_poll_floor(task_id)
        if cached is not None:
            task.polls += 1  # The cached copy already holds every poll this node counted.
            self.polls.count(task_id)
        else:
            task.polls += self.polls.count(task_id)
            self.finished.keep(task)
        if task.polls > self.settings.max_polls:
            raise CapgateError(
                ErrorCode.POLL_LIMIT_EXCEEDED,
                f"Task {task_id} was polled more than {self.settings.max_polls} times;"
                " its result is no longer available",
            )
        if not task.status.is_final and now >= task.deadline_at:
            # Enforce the deadline on read too, so no client waits on the sweep.
            for failed in await self.store.fail_overdue(now):
                await self.task_finished(failed)
            task = await self.store.get_task(task_id) or task
        return task

    def _check_poll_floor(self, task_id: int) -> None:
        """Refuse a poll that comes sooner than `min_poll_interval_seconds` after the last
        answered one of the same task (off by default), before it counts."""
        floor = self.settings.min_poll_interval_seconds
        if floor <= 0:
            return
        now = time.monotonic()
        last = self._last_polls.get(task_id)
        if last is not None and now - last < floor:
            raise CapgateError(
                ErrorCode.NO_SLOT,
                f"Task {task_id} was polled {now - last:.2f} s ago;"
                f" poll it at most every {floor:g} s",
            )
        if len(self._last_polls) >= _LAST_POLLS_SIZE:
            self._last_polls.clear()
        self._last_polls[task_id] = now

    async def report(self, key: Key, task_id: int, correct: bool) -> Task:
        """Take the key's verdict on its solved task; an incorrect answer is refunded once
        and passed on to the upstream provider that gave it.

        As the vendors do, a report of a wrong answer counts only within a window after
        the answer (`report_window_seconds`), and a key may have only a share of its paid
        answers refunded (`max_report_share`, after `report_allowance` refunds): the
        operator has paid upstream for every answer, right or wrong.
        """
        now = self.clock.now()
        before = await self.store.get_task(task_id)
        if before is not None and before.key_id == key.id and now < before.expires_at:
            window = self.settings.report_window_seconds
            late = before.finished_at is not None and now - before.finished_at > window
            if not correct and before.verdict is None and late:
                raise CapgateError(
                    ErrorCode.REPORT_NOT_RECORDED,
                    f"Report not recorded: wrong answers are refunded only within {window:g} s"
                    " of the answer",
                )
        self.finished.drop(task_id)
        limit = RefundLimit(self.settings.max_report_share, self.settings.report_allowance)
        task = await self.store.report(task_id, key.id, correct, limit)
        if task is None or now >= task.expires_at:
            raise CapgateError(ErrorCode.TASK_NOT_FOUND, f"Task {task_id} does not exist")
        if task.status is not TaskStatus.READY:
            raise CapgateError(
                ErrorCode.NOT_REPORTABLE, f"Task {task_id} has no answer to report on"
            )
        if task.verdict is False and before is not None and before.verdict is None:
            self._forward_report(task)
            if self.labels is not None:
                await self.labels.forget(task.id)
            if self.learning is not None:
                self.in_background(self.learning.reported(task))
        return task

    def _forward_report(self, task: Task) -> None:
        solver = self.router.named(task.solver)
        if solver is None:
            return

        async def forward() -> None:
            try:
                if await solver.report_incorrect(task):
                    log.info("task %d: wrong answer reported to %s", task.id, solver.name)
            except Exception as exc:  # A provider's failure must not fail the client's report.
                log.warning("task %d: could not report to %s: %s", task.id, solver.name, exc)

        self.in_background(forward())

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without waiting for it, holding a reference until it ends (a task
        nobody holds may be garbage-collected mid-flight)."""
        job = asyncio.ensure_future(work)
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def wait_until_final(self, task: Task, seconds: float) -> Task:
        """The task once it is ready or failed, or as it stands after `seconds`."""
        deadline = time.monotonic() + seconds
        with self.completions.watch(task.id) as maybe_finished:
            # The caller's copy may predate the watch: read once more under it.
            if not task.status.is_final:
                task = await self.store.get_task(task.id) or task
            while not task.status.is_final:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # Re-read at least twice a second: the task may finish on another node.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(maybe_finished.wait(), min(remaining, 0.5))
                maybe_finished.clear()
                task = await self.store.get_task(task.id) or task
        return task

    # --- remote workers -----------------------------------------------------------------

    async def authenticate_worker(self, secret: str, ip: str) -> Key:
        """The worker key a secret belongs to, used from `ip`; a client key cannot lease
        tasks."""
        key = await self.lookup_key(secret)
        _check_address(key, ip)
        if not key.worker:
            raise CapgateError(ErrorCode.KEY_DOES_NOT_EXIST, "This key is not a worker key")
        return key

    async def lease_for_worker(
        self,
        worker: Key,
        types: Collection[TaskType],
        limit: int,
        lease_seconds: float,
        request_id: str | None,
    ) -> list[Lease]:
        """Lease tasks to a remote worker; a retried request id gets the same leases back.

        The lease token is the fence every later call must show, so it must be
        unguessable and name its worker: `w<worker id>:` and either 128 random bits, or
        for a request id an HMAC of it under the worker's own key hash (the same on every
        node, so a retry on another node finds its leases; no other worker can make it).
        """
        limit = max(1, min(limit, _MAX_WORKER_LEASE))
        lease_seconds = max(1.0, min(lease_seconds, _MAX_WORKER_LEASE_SECONDS))
        if request_id:
            mac = hmac.new(worker.key_hash, request_id.encode(), hashlib.sha256).hexdigest()
            token = f"w{worker.id}:{mac[:32]}"
        else:
            token = f"w{worker.id}:{secrets.token_hex(16)}"
        return await self.store.lease(types, limit, lease_seconds, self.clock.now(), token)

    @staticmethod
    def _holds(worker: Key, token: str) -> bool:
        """Whether `token` can be one this worker was given (the store checks the rest)."""
        return token.startswith(f"w{worker.id}:")

    async def extend_for_worker(
        self, worker: Key, task_id: int, token: str, lease_seconds: float
    ) -> bool:
        """Keep a worker's lease alive for `lease_seconds` more."""
        if not self._holds(worker, token):
            return False
        now = self.clock.now()
        lease_seconds = max(1.0, min(lease_seconds, _MAX_WORKER_LEASE_SECONDS))
        return await self.store.extend_lease(task_id, token, now + lease_seconds, now)

    async def complete_for_worker(
        self, worker: Key, task_id: int, token: str, solution: Solution
    ) -> bool:
        """Record a worker's answer, fenced by its lease token."""
        if not self._holds(worker, token):
            return False
        solver = f"worker:{worker.name or worker.id}"
        task = None
        image = None
        if self.learning is not None and (solution.site_model is not None or solution.unsure):
            task = await self.store.get_task(task_id)
            if solution.site_model is not None and not await self._serves(task, solution):
                # Only the registry's serving version of the task's site counts as such.
                solution = msgspec.structs.replace(solution, site_model=None)
            elif (
                solution.site_model is not None
                and task is not None
                and await self.learning.audit_due(task)
            ):
                # Read now: recording the answer drops the image the audit needs.
                image = await self.store.held_image(task_id, token, self.clock.now())
        done = await self.store.complete(task_id, token, solution, solver, self.clock.now())
        if done:
            await self.task_finished(task_id)
            if task is not None and self.learning is not None:
                await self.learning.answered_remotely(task, solution, image)
        return done

    async def site_of(self, task: Task) -> str | None:
        """The task's site (docs/learning.md), for a worker to pick its model by."""
        return await self.learning.site_of(task) if self.learning is not None else None

    async def _serves(self, task: Task | None, solution: Solution) -> bool:
        """Whether the site model version a worker says answered is the one serving."""
        site = await self.site_of(task) if task is not None else None
        serving = (await self.store.serving_models()).get(site) if site else None
        return serving is not None and serving.version == solution.site_model

    async def fail_for_worker(
        self,
        worker: Key,
        task_id: int,
        token: str,
        code: ErrorCode,
        description: str,
        retry: bool,
    ) -> bool:
        """Record a worker's failure; with `retry`, the task goes back to the queue."""
        if not self._holds(worker, token):
            return False
        solver = f"worker:{worker.name or worker.id}"
        done = await self.store.fail(
            task_id,
            token,
            code,
            description,
            solver,
            self.clock.now(),
            retry=retry,
            max_attempts=self.settings.max_attempts,
        )
        if done:
            await self.task_finished(task_id)
        return done

    async def task_finished(self, task_id: int) -> None:
        """Wake whoever waits for the task, and count it if it has reached its end."""
        self.completions.finished(task_id)
        try:
            task = await self.store.get_task(task_id)
        except Exception:  # Counting must never break solving.
            log.exception("task %d: could not count it", task_id)
            return
        if task is not None and task.status.is_final:
            status = "ready" if task.status is TaskStatus.READY else "failed"
            seconds = (task.finished_at or 0.0) - (task.started_at or task.created_at)
            self.metrics.task_finished(task.type.value, status, task.solver or "none", seconds)
            if self.deliverer is not None:
                self.deliverer.deliver(task)

    async def balance(self, key: Key) -> Key:
        """The key with its current balance."""
        return await self.store.get_key(key.id) or key

    async def queue_stats(self, task_type: TaskType | None) -> QueueStats:
        """The load on the queue of one task type, from this node's solvers and the
        store's queue depth (every type's: the store counts one queue); cached 10 s."""
        now = time.monotonic()
        cached = self._queue_stats.get(task_type)
        if cached is not None and cached[0] > now:
            return cached[1]
        solvers = (
            [] if task_type is None else [s for s in self.router.solvers if task_type in s.types]
        )
        serving = [s for s in solvers if self.router.breaker_state(s.name) != "open"]
        depth = await self.store.queue_depth()
        speed = self.metrics.mean_solve_seconds(s.name for s in solvers)
        stats = QueueStats(
            waiting=0 if depth else len(serving),
            load=round(100.0 * depth / (depth + len(serving)), 2) if depth else 0.0,
            bid=0 if task_type is None else self.settings.prices[task_type],
            speed=round(speed or 0.0, 2),
            total=len(solvers),
        )
        self._queue_stats[task_type] = (now + _QUEUE_STATS_SECONDS, stats)
        return stats

    async def spending_stats(
        self,
        key: Key,
        start: float | None,
        types: frozenset[TaskType] | None = None,
        soft_id: str | None = None,
        ip: str | None = None,
    ) -> list[SpendingRecord]:
        """The key's spending hour by hour for 24 hours: from the hour `start` falls in,
        or up to the current hour; only the task types, soft id and ip asked for."""
        first = hour_of(start) if start is not None else hour_of(self.clock.now()) - 23 * HOUR
        hours = {first + i * HOUR: [0, 0] for i in range(_SPENDING_HOURS)}
        for line in await self.store.spending(key.id, first, first + _SPENDING_HOURS * HOUR):
            if types is not None and line.type not in types:
                continue
            if (soft_id is not None and line.soft_id != soft_id) or (
                ip is not None and line.ip != ip
            ):
                continue
            totals = hours.get(line.hour)
            if totals is not None:
                totals[0] += line.volume
                totals[1] += line.money
        return [
            SpendingRecord(hour, hour + HOUR - 1, volume, money)
            for hour, (volume, money) in hours.items()
        ]

    async def maintain(self) -> None:
        """One pass of housekeeping: expired leases, missed deadlines, retention.

        Nodes sharing a store take turns: only the holder of the store's maintenance lock
        sweeps, and another node takes over within a few intervals if it stops."""
        hold = 3 * self.settings.sweep_interval_seconds
        if not await self.store.hold_maintenance(self.node, hold):
            return
        now = self.clock.now()
        moved = await self.store.requeue_expired_leases(now, self.settings.max_attempts)
        moved += await self.store.fail_overdue(now)
        # Tasks the sweep ended get what a solver's end gets: waiters woken, metrics,
        # callbacks (task_finished skips the ones that only went back to the queue).
        for task_id in moved:
            await self.task_finished(task_id)
        await self.store.purge(now, 1000)


_MAX_FIELD_DEPTH = 8
_MAX_FIELDS = 200


def _check_address(key: Key, ip: str) -> None:
    """Refuse a key used from outside the networks it allows (none listed: anywhere)."""
    if not key.allow_ips:
        return
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        address = None
    if address is not None and any(
        address in ipaddress.ip_network(network, strict=False) for network in key.allow_ips
    ):
        return
    raise CapgateError(
        ErrorCode.IP_NOT_ALLOWED, f"This key may not be used from {ip or 'an unknown address'}"
    )


def _check_fields(params: dict[str, Any], max_chars: int) -> None:
    """Refuse task fields no captcha needs: over-long text, deep nesting, too many fields.

    Everything here is stored with the task, so a limit on each keeps a 1 MB request from
    becoming a 1 MB row of junk; each refusal names the field.
    """
    count = 0

    def walk(value: Any, where: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > _MAX_FIELDS:
            raise CapgateError(
                ErrorCode.BAD_REQUEST, f"The task has more than {_MAX_FIELDS} fields"
            )
        if depth > _MAX_FIELD_DEPTH:
            raise CapgateError(ErrorCode.BAD_REQUEST, f"Task field {where} nests too deep")
        if isinstance(value, str) and len(value) > max_chars:
            raise CapgateError(
                ErrorCode.BAD_REQUEST,
                f"Task field {where} is {len(value)} characters; at most {max_chars} are accepted",
            )
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{where}.{name}" if where else str(name), depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]", depth + 1)

    walk(params, "", 0)


def _check_threshold(params: dict[str, Any]) -> None:
    """Refuse a `recognizingThreshold` that is not a number from 0 to 100 before anything
    is stored (the dispatcher applies it)."""
    try:
        recognizing_threshold(params)
    except ValueError as exc:
        raise CapgateError(ErrorCode.BAD_REQUEST, str(exc)) from None


# The options of a key suffix that capgate knows (lower case, as sent in any case).
_KEY_OPTIONS = {"recognizingthreshold": THRESHOLD_FIELD}


def _key_options(suffix: str) -> dict[str, Any]:
    """The known options of a key suffix (`recognizingthreshold_70__module`, parts split
    by `__`, each `name_value`); module names and unknown options are ignored."""
    options: dict[str, Any] = {}
    for part in suffix.split("__"):
        name, _, text = part.partition("_")
        field = _KEY_OPTIONS.get(name.lower())
        if field is not None and text:
            # A number when it is one; else the text, for create_task to refuse by name.
            value: Any = text
            with contextlib.suppress(ValueError):
                value = float(text) if "." in text else int(text)
            options[field] = value
    return options


def _fingerprint(spec: TaskSpec) -> bytes:
    """What makes two create requests the same task, for idempotency keys."""
    digest = hashlib.sha256(msgspec.json.encode([spec.type, spec.params], order="sorted"))
    digest.update(spec.body or b"")
    return digest.digest()
