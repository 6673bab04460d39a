"""Per-key limits on createTask: a rate (token bucket) and a number of tasks in flight.

The rate is counted in each server process (with `serve --workers N`, each allows the
rate); tasks in flight are counted in the store, so every process sees the same number.
"""

from __future__ import annotations

import time

from capgate.model import CapgateError, ErrorCode


class RateLimiter:
    """A token bucket per key: `rate` creates a second, bursts of up to `rate` (at least 1)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._buckets: dict[int, tuple[float, float]] = {}

    def take(self, key_id: int) -> None:
        """Spend one token for this key, or raise NO_SLOT if it has none left."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            raise CapgateError(
                ErrorCode.NO_SLOT,
                f"Too many tasks: this key may create {self.rate:g} per second",
            )
        self._buckets[key_id] = (tokens - 1.0, now)

    def peek(self, key_id: int) -> tuple[int, int, float] | None:
        """This key's bucket without spending from it: (capacity, whole tokens left,
        seconds until it is full again); None when no rate is set."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        tokens, last = self._buckets.get(key_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        return int(self.capacity), int(tokens), (self.capacity - tokens) / self.rate
