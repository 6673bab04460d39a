"""A bounded in-memory cache of finished tasks, for the result polls that follow them.

A ready or failed task never changes what a result poll shows (its answer, cost, times and
error are fixed; only the poll count, a report's verdict and its deletion at retention
come later), so a node may keep it and answer polls without reading the store. Expiry is
checked from the task's own `expires_at`; a report on this node drops the entry.
"""

from __future__ import annotations

from capgate.model import Task

CAPACITY = 10_000


class FinishedTasks:
    """Finished tasks by id, the oldest dropped first once `capacity` is reached."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._tasks: dict[int, Task] = {}

    def get(self, task_id: int) -> Task | None:
        """The cached task, if any."""
        return self._tasks.get(task_id)

    def keep(self, task: Task) -> None:
        """Remember a finished task (anything else is ignored)."""
        if not task.status.is_final:
            return
        if len(self._tasks) >= self.capacity:
            del self._tasks[next(iter(self._tasks))]
        self._tasks[task.id] = task

    def drop(self, task_id: int) -> None:
        """Forget a task (it was reported, or has expired)."""
        self._tasks.pop(task_id, None)
