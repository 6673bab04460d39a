"""Wakes the requests waiting for a task the moment it finishes on this node.

Used by dialects that answer a task inside createTask (CapSolver's image tasks) and by
long-polling. Tasks that finish elsewhere (another node, a sweep) are noticed by the
waiter's periodic re-read, so a missed wake-up costs latency, never correctness.
"""

from __future__ import annotations

import asyncio


class Completions:
    """Per-task wake-ups for waiting requests."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}

    def finished(self, task_id: int) -> None:
        """Wake everyone waiting for this task."""
        for waiter in self._waiters.pop(task_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, task_id: int, seconds: float) -> None:
        """Return when the task finishes here or `seconds` pass, whichever is first."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(task_id, set())
        waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            pass
        finally:
            remaining = self._waiters.get(task_id)
            if remaining is not None:
                remaining.discard(waiter)
                if not remaining:
                    del self._waiters[task_id]
