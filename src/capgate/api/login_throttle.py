"""A throttle on guessing the admin key: failed attempts counted per client address.

After MAX_FAILURES wrong keys within WINDOW_SECONDS an address waits until the oldest of
them is a window old; meanwhile every attempt from it is refused unread, the right key
too: a throttle that still said "yes" to the right key would leave an oracle open. The
table is bounded (MAX_ADDRESSES; the least recently failing address goes first) and an
IPv6 client counts as its /64, which one machine usually owns whole. Each server process
counts its own attempts.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

from capgate.clock import Clock

MAX_FAILURES = 5
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 4096


class LoginThrottle:
    """Failed admin-key attempts per client address, over a sliding window."""

    def __init__(
        self,
        clock: Clock,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        # Address -> times of its recent failures, oldest first; least recent address first.
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def retry_after(self, client_ip: str) -> int:
        """Seconds until `client_ip` may try again; 0 if it may now."""
        now = self._clock.now()
        times = self._recent(_address(client_ip), now)
        if len(times) < self.max_failures:
            return 0
        return max(1, math.ceil(times[-self.max_failures] + self.window - now))

    def failed(self, client_ip: str) -> None:
        """Count a wrong key from `client_ip`."""
        now = self._clock.now()
        address = _address(client_ip)
        times = self._recent(address, now)
        if address not in self._failures and len(self._failures) >= self.max_addresses:
            self._make_room(now)
        times.append(now)
        # Only the last max_failures matter for the lockout.
        self._failures[address] = times[-self.max_failures :]
        self._failures.move_to_end(address)

    def succeeded(self, client_ip: str) -> None:
        """The right key: the address starts again from nothing."""
        self._failures.pop(_address(client_ip), None)

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(address, ()) if now - t < self.window]
        if not times:
            self._failures.pop(address, None)
        return times

    def _make_room(self, now: float) -> None:
        # Least recently failing first: drop the stale ones, then the oldest if still full.
        while self._failures:
            oldest, times = next(iter(self._failures.items()))
            if now - times[-1] < self.window and len(self._failures) < self.max_addresses:
                return
            del self._failures[oldest]


def _address(client_ip: str) -> str:
    """What is counted: the address, or an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
