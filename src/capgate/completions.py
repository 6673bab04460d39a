"""Wakes the requests waiting for a task the moment it finishes on this node.

Used by dialects that answer a task inside createTask (CapSolver's image tasks) and by
long-polling. A waiter registers before it reads the task, so a completion that lands while
the read is in flight (a Redis round trip) still wakes it. Tasks that finish elsewhere
(another node, a sweep) are noticed by the waiter's periodic re-read, so a missed wake-up
costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Completions:
    """Per-task wake-ups for waiting requests."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = {}

    def finished(self, task_id: int) -> None:
        """Wake everyone watching this task."""
        for event in self._waiters.get(task_id, ()):
            event.set()

    @contextlib.contextmanager
    def watch(self, task_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever the task may have finished, for as long as the block runs.

        Clear it before each read of the task: one set after the clear is never lost.
        """
        event = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]
