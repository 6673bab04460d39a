"""The one source of time: every rule about deadlines, leases and retention reads it here."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time in seconds since the epoch."""

    def now(self) -> float:
        """The current time, in seconds since the epoch."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        """The current wall-clock time."""
        return time.time()


class OffsetClock:
    """The wall clock moved forward by an offset that tests can advance."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """The wall-clock time plus the offset."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self.offset += seconds
        return self.now()
