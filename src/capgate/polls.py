"""Result polls counted in memory and added to the store in batches.

Every getTaskResult counts one poll (the vendors cap them at 120 per task), and a write per
read would cost more than the whole rest of the request (SQLite: about 46 µs for the update
against 10 µs for the read, on these machines). So polls are counted here and added to the
store in one batch every `interval`. What a crash can cost: the polls of the last interval
are forgotten, so a client may poll a few more times than the cap. Nothing else depends on
them. With several nodes each counts its own polls; the cap then holds within the polls
of one interval per node.
"""

from __future__ import annotations

import logging

from capgate.store.base import Store

log = logging.getLogger("capgate.polls")


class PollCounter:
    """Counts polls per task until they are flushed to the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[int, int] = {}

    def count(self, task_id: int) -> int:
        """Count one poll of the task; how many of its polls are not yet in the store."""
        pending = self._pending.get(task_id, 0) + 1
        self._pending[task_id] = pending
        return pending

    async def flush(self) -> None:
        """Add the counted polls to the store; on failure keep them for the next try."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self.store.add_polls(batch)
        except Exception:
            for task_id, polls in batch.items():
                self._pending[task_id] = self._pending.get(task_id, 0) + polls
            raise
