"""The dispatcher: leases queued tasks and runs them on this node's solvers.

A lease has a deadline. The dispatcher finishes each task with the lease token it got, so if
the lease ran out meanwhile (and the task went back to the queue), its late answer is
ignored by the store. A node that crashes mid-task leaves leases that the sweep returns to
the queue once they expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from capgate.clock import Clock
from capgate.config import Settings
from capgate.model import ErrorCode, Lease
from capgate.router import Router
from capgate.solvers.base import SolveError
from capgate.store.base import Store

log = logging.getLogger("capgate.dispatch")


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

    def wake(self) -> None:
        """Tell the dispatcher there may be new work (called when a task is created)."""
        self._wake.set()

    def start(self) -> None:
        """Begin pulling work in the background."""
        self._loop_task = asyncio.create_task(self._pull_forever(), name="capgate-dispatch")

    async def stop(self) -> None:
        """Stop pulling work and cancel what is in flight; its leases expire and requeue."""
        tasks = [t for t in (self._loop_task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pull_forever(self) -> None:
        types = self.router.task_types
        while True:
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
        task = lease.task
        solver = self.router.choose(task.type, task.params)
        store, settings, clock = self.store, self.settings, self.clock
        if solver is None:
            await store.fail(
                task.id,
                lease.token,
                ErrorCode.TASK_NOT_SUPPORTED,
                "No solver here accepts this task any more",
                "none",
                clock.now(),
                retry=False,
                max_attempts=settings.max_attempts,
            )
            return
        try:
            timeout = max(0.0, lease.expires_at - clock.now())
            solution = await asyncio.wait_for(solver.solve(task), timeout)
        except SolveError as exc:
            await store.fail(
                task.id,
                lease.token,
                exc.code,
                exc.description,
                solver.name,
                clock.now(),
                retry=exc.retry,
                max_attempts=settings.max_attempts,
            )
            return
        except TimeoutError:
            # The lease ran out; the sweep requeues the task or fails it if out of attempts.
            log.warning("solver %s did not finish task %d within its lease", solver.name, task.id)
            return
        except Exception:
            log.exception("solver %s crashed on task %d", solver.name, task.id)
            await store.fail(
                task.id,
                lease.token,
                ErrorCode.INTERNAL,
                "The solver failed unexpectedly",
                solver.name,
                clock.now(),
                retry=True,
                max_attempts=settings.max_attempts,
            )
            return
        if not await store.complete(task.id, lease.token, solution, solver.name, clock.now()):
            log.info("task %d: late answer from %s ignored (lease lost)", task.id, solver.name)
