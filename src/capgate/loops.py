"""Background loops (the dispatcher, the sweeper, the poll flusher) and their cancellation."""

from __future__ import annotations

import asyncio


def stop_if_cancelled() -> None:
    """End a background loop whose cancellation a library swallowed, instead of letting it
    run on and hang the shutdown that waits for it. redis-py can: a cancellation that lands
    inside a command may return the command's answer instead (seen with EVALSHA)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
