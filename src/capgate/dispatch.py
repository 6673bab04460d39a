"""The dispatcher: leases queued tasks and runs them on this node's solvers.

Each task goes to its candidates in the router's order until one answers (failover inside
one task), within the task's deadline. A lease has a deadline, kept alive while a solver
works. The dispatcher finishes each task with the lease token it got, so if
the lease ran out meanwhile (and the task went back to the queue), its late answer is
ignored by the store. A node that crashes mid-task leaves leases that the sweep returns to
the queue once they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from capgate.clock import Clock
from capgate.config import Settings
from capgate.labels import LabelKeeper
from capgate.learning.loop import Learning
from capgate.model import ErrorCode, Lease, Solution, Task, TaskType
from capgate.router import Router
from capgate.solvers.base import SolveError, Solver
from capgate.store.base import Store

log = logging.getLogger("capgate.dispatch")

THRESHOLD_FIELD = "recognizingThreshold"


def recognizing_threshold(params: Mapping[str, Any]) -> float | None:
    """CapMonster's `recognizingThreshold` of an image task as a probability (0-100 sent,
    0-1 returned), None when absent; ValueError when it is not a number from 0 to 100.

    Numeric strings count: form-encoded clients (and the key suffix) send text."""
    value = params.get(THRESHOLD_FIELD)
    if value is None:
        return None
    number = math.nan
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError, OverflowError):  # 10**400 is no float
            number = float(value)
    if not 0 <= number <= 100:  # NaN too: it compares false
        raise ValueError(f"{THRESHOLD_FIELD} must be a number from 0 to 100, not {value!r}")
    return number / 100


class Dispatcher:
    """Pulls work from the store and hands it to solvers, at most `capacity` at a time."""

    def __init__(
        self,
        store: Store,
        router: Router,
        settings: Settings,
        clock: Clock,
        on_finished: Callable[[int], None] | None = None,
        capacity: int = 16,
        labels: LabelKeeper | None = None,
        learning: Learning | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.settings = settings
        self.clock = clock
        self.capacity = capacity
        self._on_finished = on_finished
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        # Set before the loop is cancelled: redis-py can swallow a cancellation that lands
        # inside a command, and the loop must end all the same.
        self._stopping = False
        self._key_names: dict[int, str] = {}
        self._labels = labels
        self._learning = learning

    def wake(self) -> None:
        """Tell the dispatcher there may be new work (called when a task is created)."""
        self._wake.set()

    def start(self) -> None:
        """Begin pulling work in the background."""
        self._loop_task = asyncio.create_task(self._pull_forever(), name="capgate-dispatch")

    async def stop(self) -> None:
        """Stop pulling work and cancel what is in flight; its leases expire and requeue."""
        self._stopping = True
        tasks = [t for t in (self._loop_task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pull_forever(self) -> None:
        types = self.router.task_types
        while not self._stopping:
            self._wake.clear()
            try:
                free = self.capacity - len(self._running)
                leases = await self.store.lease(
                    types, free, self.settings.lease_seconds, self.clock.now()
                )
            except Exception:
                log.exception("leasing failed; trying again shortly")
                leases = []
            for lease in leases:
                task = asyncio.create_task(self._run_logged(lease))
                self._running.add(task)
                task.add_done_callback(self._finished)
            if leases and len(self._running) < self.capacity:
                continue  # There may be more queued work right now.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.dispatch_idle_seconds)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()  # A slot is free.

    async def _run_logged(self, lease: Lease) -> None:
        try:
            await self._run(lease)
        except Exception:
            # The lease stays held and expires; the sweep then requeues the task.
            log.exception("task %d: could not record the outcome", lease.task.id)
        if self._on_finished is not None:
            self._on_finished(lease.task.id)

    async def _run(self, lease: Lease) -> None:
        """Try the task's candidates in the policy's order until one answers.

        Each solver after the first counts one more attempt under the same lease (the
        task's solveCount). A local answer less sure than `ocr_min_confidence` (unless a
        site model gave it, at or above its site's own threshold) is kept while the next
        candidates try; it stands if none of them answers. One less sure
        than the task's `recognizingThreshold` never stands: unless a later candidate
        answers, the task fails CAPTCHA_UNSOLVABLE (failed tasks are refunded).
        """
        task, token = lease.task, lease.token
        store, settings, clock, router = self.store, self.settings, self.clock, self.router
        candidates = router.candidates(task.type, task.params, await self._policy_for(task))
        if not candidates:
            await self._fail(
                lease, SolveError(ErrorCode.TASK_NOT_SUPPORTED, "No solver here accepts this task")
            )
            return
        threshold = _threshold_of(task)
        unsure: tuple[Solver, Solution] | None = None
        refused: tuple[Solver, SolveError] | None = None
        last: tuple[Solver, SolveError] | None = None
        attempts = 0
        for position, solver in enumerate(candidates):
            if not router.allow(solver):
                continue
            now = clock.now()
            if now >= task.deadline_at:
                break
            if attempts and not await store.extend_lease(
                task.id, token, now + settings.lease_seconds, now, count_attempt=True
            ):
                return  # The lease is gone: the task is someone else's now.
            attempts += 1
            started = time.monotonic()
            try:
                solution = await self._attempt(solver, task, token, self._timeout(solver, task))
            except _LeaseLost:
                return
            except SolveError as exc:
                router.record(solver, False, time.monotonic() - started, its_fault=exc.retry)
                last = (solver, exc)
                continue
            except TimeoutError:
                router.record(solver, False, time.monotonic() - started, its_fault=True)
                log.warning("solver %s did not answer task %d in time", solver.name, task.id)
                last = (solver, SolveError(ErrorCode.TASK_TIMEOUT, "No answer in time", retry=True))
                continue
            except Exception:
                router.record(solver, False, time.monotonic() - started, its_fault=True)
                log.exception("solver %s crashed on task %d", solver.name, task.id)
                error = SolveError(ErrorCode.INTERNAL, "The solver failed unexpectedly", retry=True)
                last = (solver, error)
                continue
            router.record(solver, True, time.monotonic() - started, its_fault=False)
            confidence = solution.confidence  # None: an upstream provider's answer
            if threshold is not None and confidence is not None and confidence < threshold:
                if refused is None:
                    refused = (solver, _below_threshold(confidence, threshold))
                continue
            # A site model's answer reached the threshold its site's held-out labels set
            # (docs/learning.md): that, not the generalist's `ocr_min_confidence`, rules it.
            sure = not solution.unsure and (
                confidence is None
                or confidence >= settings.ocr_min_confidence
                or solution.site_model is not None
            )
            if not sure and unsure is None and position < len(candidates) - 1:
                unsure = (solver, solution)
                continue
            await self._complete(lease, solver, solution)
            return
        if unsure is not None:
            await self._complete(lease, *unsure)
        elif refused is not None:
            # The client asked not to get (nor pay for) an answer this unsure.
            await self._fail(lease, refused[1], refused[0].name)
        elif last is not None:
            await self._fail(lease, last[1], last[0].name)
        else:
            # Every candidate's breaker is open: fail fast, the client pays nothing.
            error = SolveError(
                ErrorCode.INTERNAL, "Every solver for this task is out of service; try again"
            )
            await self._fail(lease, error)

    async def _attempt(self, solver: Solver, task: Task, token: str, seconds: float) -> Solution:
        """One solver's try, keeping the lease alive while it works (a crashed node's
        lease then runs out soon and the task goes to another)."""
        solving = asyncio.ensure_future(solver.solve(task))
        beat = max(0.05, self.settings.lease_seconds / 3)
        try:
            async with asyncio.timeout(seconds):
                while True:
                    done, _ = await asyncio.wait({solving}, timeout=beat)
                    if done:
                        return solving.result()
                    now = self.clock.now()
                    expires = now + self.settings.lease_seconds
                    if not await self.store.extend_lease(task.id, token, expires, now):
                        raise _LeaseLost
        finally:
            if not solving.done():
                solving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await solving

    def _timeout(self, solver: Solver, task: Task) -> float:
        remaining = max(0.0, task.deadline_at - self.clock.now())
        limit = solver.attempt_seconds
        return min(remaining, limit) if limit else remaining

    async def _policy_for(self, task: Task) -> str:
        policies = self.settings.key_policies
        if policies:
            name = self._key_names.get(task.key_id)
            if name is None:
                key = await self.store.get_key(task.key_id)
                name = self._key_names[task.key_id] = key.name if key else ""
            if name in policies:
                return policies[name]
        return self.settings.routing_policy

    async def _recorded(self, task_id: int, write: Callable[[], Awaitable[bool]]) -> bool:
        """Run a fenced write of a task's outcome (complete, fail), again and again while
        the store cannot be reached, for at most one lease's time.

        Running it twice is harmless: once one has landed, the fence refuses the next (it
        answers False, as for a lost lease). Giving up at once would leave the task leased,
        its answer lost, until the lease ran out and the task was solved again.
        """
        delay, give_up = 0.05, time.monotonic() + self.settings.lease_seconds
        while True:
            try:
                return await write()
            except Exception as exc:
                if self._stopping or time.monotonic() + delay > give_up:
                    raise
                log.warning("task %d: could not record the outcome (%s); again", task_id, exc)
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def _complete(self, lease: Lease, solver: Solver, solution: Solution) -> None:
        task = lease.task

        def complete() -> Awaitable[bool]:
            now = self.clock.now()
            return self.store.complete(task.id, lease.token, solution, solver.name, now)

        if await self._recorded(task.id, complete):
            self.router.charge(solver, task.type)
            if (
                self._labels is not None
                and solver.upstream
                and task.type is TaskType.IMAGE_TO_TEXT
                and task.body
                and solution.text
                and not task.params.get("math")  # the answer is a sum's value, not its text
            ):
                await self._labels.keep(task.id, task.body, solution.text)
            if self._learning is not None:
                await self._learning.answered(task, solver, solution)
        else:
            log.info("task %d: late answer from %s ignored (lease lost)", task.id, solver.name)

    async def _fail(self, lease: Lease, error: SolveError, solver: str = "none") -> None:
        def fail() -> Awaitable[bool]:
            return self.store.fail(
                lease.task.id,
                lease.token,
                error.code,
                error.description,
                solver,
                self.clock.now(),
                retry=error.retry,
                max_attempts=self.settings.max_attempts,
            )

        await self._recorded(lease.task.id, fail)


def _threshold_of(task: Task) -> float | None:
    """The task's recognizingThreshold as a probability (image tasks only, as CapMonster
    applies it); createTask refused bad values, so one here is ignored."""
    if task.type is not TaskType.IMAGE_TO_TEXT:
        return None
    try:
        return recognizing_threshold(task.params)
    except ValueError:
        return None


def _below_threshold(confidence: float, threshold: float) -> SolveError:
    return SolveError(
        ErrorCode.CAPTCHA_UNSOLVABLE,
        f"The answer was {confidence:.1%} sure; recognizingThreshold asks for {threshold * 100:g}%",
    )


class _LeaseLost(Exception):
    """The store no longer holds this node's lease on the task."""
