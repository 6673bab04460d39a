"""The store interface: durable tasks, the queue, leases, keys and balances.

Every operation that must be atomic is one call, so each implementation can make it one
transaction (SQLite), one script (Redis) or one uninterrupted step (memory). Time is always
passed in by the caller, so a test can move it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from capgate.model import CapgateError, ErrorCode, Key, Lease, Solution, Task, TaskSpec, TaskType
from capgate.store.sites import SiteStore


class Store(SiteStore):
    """Where capgate keeps everything that must survive a restart (the learning half, the
    sites' labels, models and counters, is `SiteStore`'s)."""

    async def open(self) -> None:  # an optional hook
        """Prepare the store for use (create files, tables, connections)."""

    async def close(self) -> None:  # an optional hook
        """Release what `open` took."""

    # --- keys -------------------------------------------------------------------------

    @abc.abstractmethod
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
        """Store a new key by the SHA-256 of its secret; refuse a hash that exists.

        `allow_ips`: the networks (CIDR, already checked) the key may be used from;
        `site`: the site its image tasks belong to when they name none."""

    @abc.abstractmethod
    async def key_by_hash(self, key_hash: bytes) -> Key | None:
        """The key whose secret hashes to `key_hash`, if any."""

    @abc.abstractmethod
    async def get_key(self, key_id: int) -> Key | None:
        """The key with this id, if any."""

    @abc.abstractmethod
    async def list_keys(self) -> list[Key]:
        """Every key, oldest first."""

    @abc.abstractmethod
    async def add_balance(self, key_id: int, amount: int) -> Key | None:
        """Add (or with a negative amount, take) money; the key after the change."""

    # --- tasks ------------------------------------------------------------------------

    @abc.abstractmethod
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
        """Debit `cost` and queue the task in one step.

        Raises CapgateError(ZERO_BALANCE) and stores nothing when the balance is short,
        and CapgateError(NO_SLOT) when `max_in_flight` > 0 and the key already has that
        many tasks queued or running: checked in the same step as the insert, so
        concurrent creates cannot all pass the check before any of them is stored.
        With `idempotency` (the client's key and a fingerprint of the task), a key the
        client used before returns the task it created then, charging nothing more; used
        with a different task it raises CapgateError(IDEMPOTENCY_CONFLICT).
        """

    @abc.abstractmethod
    async def get_task(self, task_id: int) -> Task | None:
        """The task with this id, whoever owns it, without its image body (only a lease
        hands the image to a solver; result reads need not carry it)."""

    @abc.abstractmethod
    async def add_polls(self, counts: Mapping[int, int]) -> None:
        """Add result polls to tasks (task id: polls), in one step; gone tasks are skipped.

        Polls are counted in memory and added in batches (capgate.polls): a read of a
        result then costs no write.
        """

    @abc.abstractmethod
    async def report(
        self, task_id: int, key_id: int, correct: bool, limit: RefundLimit | None = None
    ) -> Task | None:
        """Record the key's verdict on its ready task, once; an incorrect one refunds it.

        Returns the task (with the verdict that stands), or None if it is not the key's.
        A verdict on a task that is not ready changes nothing. With `limit`, an incorrect
        verdict that would refund more than the limit allows raises
        CapgateError(REPORT_NOT_RECORDED) and records nothing (checked in the same step as
        the refund, so concurrent reports cannot all pass it).
        """

    @abc.abstractmethod
    async def lease(
        self,
        types: Collection[TaskType],
        limit: int,
        lease_seconds: float,
        now: float,
        token: str | None = None,
    ) -> list[Lease]:
        """Move up to `limit` queued tasks of these types to running, fairly across keys.

        The order is `fair_order`'s: one task from each key with queued tasks (oldest
        first), then a second from each, and so on; so one key's flood never starves another.

        They share a lease token (a fresh one, or `token`) and each gets one more attempt
        (counted now, so a solver that dies mid-task still used an attempt). Asked again
        with the same `token` while those leases live, it returns the same tasks and leases
        nothing new: a worker that lost the answer and retries strands nothing.
        """

    @abc.abstractmethod
    async def extend_lease(
        self,
        task_id: int,
        token: str,
        expires_at: float,
        now: float,
        *,
        count_attempt: bool = False,
    ) -> bool:
        """Push a live lease's deadline out; False if the lease is no longer held.

        With `count_attempt` the task also counts one more attempt: the dispatcher hands
        the task to its next solver under the same lease (failover inside one task).
        """

    @abc.abstractmethod
    async def held_image(self, task_id: int, token: str, now: float) -> bytes | None:
        """The image of a task while `token` holds a live lease on it, else None.

        The learning loop audits a remote worker's site-model answer with it: it must be
        read before `complete` drops it, and only by the lease's holder.
        """

    @abc.abstractmethod
    async def complete(
        self, task_id: int, token: str, solution: Solution, solver: str, now: float
    ) -> bool:
        """Mark a leased task ready and charge its key, once.

        False (and nothing changed) when the token does not hold a live lease: a late result
        from an expired lease is ignored.
        """

    @abc.abstractmethod
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
        """End a lease with an error.

        With `retry` and attempts left the task goes back to the queue; otherwise it fails
        and its cost is refunded. False when the token does not hold a live lease.
        """

    @abc.abstractmethod
    async def requeue_expired_leases(self, now: float, max_attempts: int) -> list[int]:
        """Return tasks whose lease ran out to the queue, or fail them if out of attempts;
        the ids of the tasks it moved."""

    @abc.abstractmethod
    async def fail_overdue(self, now: float) -> list[int]:
        """Fail (and refund) every unfinished task whose deadline has passed; their ids."""

    @abc.abstractmethod
    async def purge(self, now: float, limit: int) -> int:
        """Delete up to `limit` tasks whose retention has run out."""

    async def hold_maintenance(self, holder: str, seconds: float) -> bool:
        """Take or renew the right to run the sweeps for `seconds`; False while another
        holder has it. A store that one process owns needs no lock (a store that several
        nodes share overrides this): its sweeps are atomic anyway, the lock only spares
        every node from repeating them."""
        return True

    @abc.abstractmethod
    async def in_flight(self, key_id: int) -> int:
        """How many of the key's tasks are queued or running."""

    @abc.abstractmethod
    async def queue_depth(self) -> int:
        """How many tasks wait in the queue."""

    @abc.abstractmethod
    async def recent_tasks(self, limit: int) -> list[Task]:
        """The newest `limit` stored tasks, newest first, without their image bodies
        (for operators: the dashboard and `capgate tasks`)."""

    @abc.abstractmethod
    async def spending(self, key_id: int, since: float, until: float) -> list[Spending]:
        """The key's spending ledger for the hours that start in [since, until).

        A task adds to the hour it was answered in (`complete`: one more in `volume`, its
        cost in `money`, free tasks too); a refunded report takes its cost back from that
        same hour. The ledger is kept apart from the tasks, so it outlives their retention
        (for SPENDING_KEEP_SECONDS). Lines come sorted by hour, type, ip and soft id.
        """


# What the learning half keeps of each site (SiteStore): the newest lines of its history,
# and the bytes of its newest versions (besides the one serving, which always keeps them).
SITE_HISTORY_KEEP = 200
SITE_FILES_KEEP = 3

# How long the spending ledger keeps an hour: a month of Anti-Captcha's 24-hour reports.
SPENDING_KEEP_SECONDS = 32 * 86_400
HOUR = 3600


@dataclasses.dataclass(frozen=True)
class Spending:
    """One line of a key's spending ledger: an hour, and what was answered in it."""

    hour: int  # Unix time of the hour's start
    type: TaskType
    ip: str
    soft_id: str  # the client's softId (or CapSolver appId); "" when it sent none
    volume: int
    money: int


def hour_of(moment: float) -> int:
    """The start of the UTC hour `moment` falls in."""
    return int(moment // HOUR) * HOUR


# An application id is a number or a short name; a longer one is cut (each distinct id is
# a line of the spending ledger, kept a month).
MAX_SOFT_ID = 32


def soft_id_of(params: Mapping[str, Any]) -> str:
    """The application id a task was sent with (Anti-Captcha's softId, CapSolver's appId),
    at most MAX_SOFT_ID characters."""
    for name in ("softId", "appId"):
        value = params.get(name)
        if isinstance(value, bool) or value is None or value == "":
            continue
        if isinstance(value, int | str):
            return str(value)[:MAX_SOFT_ID]
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
    return ""


@dataclasses.dataclass(frozen=True)
class RefundLimit:
    """How many reports of wrong answers a key may have refunded.

    A key's first `allowance` refunds are always granted; after that a refund is granted
    while refunds stay at most `max_share` of the paid tasks the key had answered.
    """

    max_share: float
    allowance: int

    def allows(self, refunds: int, solved: int) -> bool:
        """True if one more refund is within the limit."""
        return refunds < self.allowance or refunds + 1 <= self.max_share * solved


def report_not_recorded(refunds: int, solved: int) -> CapgateError:
    """The error for a refund past the key's limit."""
    return CapgateError(
        ErrorCode.REPORT_NOT_RECORDED,
        f"Report not recorded: this key has had {refunds} of its {solved} paid answers"
        " refunded, more than its share of reports allows",
    )


def fair_order(queues: Mapping[int, list[int]], limit: int) -> list[int]:
    """The tasks to lease, given each key's queued task ids (each list oldest first).

    Round-robin over keys: round r takes each key's r-th oldest task, keys in the order
    of their oldest queued task. Every store leases in exactly this order.
    """
    keys = sorted((ids for ids in queues.values() if ids), key=lambda ids: ids[0])
    picked: list[int] = []
    depth = 0
    while len(picked) < limit and keys:
        keys = [ids for ids in keys if len(ids) > depth]
        for ids in keys:
            if len(picked) == limit:
                break
            picked.append(ids[depth])
        depth += 1
    return picked


def idempotency_conflict(idempotency_key: str) -> CapgateError:
    """The error for an idempotency key reused with a different task."""
    return CapgateError(
        ErrorCode.IDEMPOTENCY_CONFLICT,
        f"Idempotency key {idempotency_key!r} was used for a different task",
    )


def too_many_in_flight(limit: int) -> CapgateError:
    """The error for a create past the key's tasks-in-flight limit."""
    return CapgateError(ErrorCode.NO_SLOT, f"Too many tasks in flight: this key may have {limit}")


def out_of_attempts(attempts: int) -> str:
    """The description of a task that used up its attempts."""
    return f"No solver finished the task in {attempts} attempts"


def timed_out(deadline_seconds: float) -> str:
    """The description of a task that passed its deadline unsolved."""
    return f"No solver finished the task within its {round(deadline_seconds)} s deadline"
