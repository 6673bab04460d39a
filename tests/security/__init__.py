"""The security ring: hostile input against a real server process on 127.0.0.1.

`HealthProbe` is shared by its tests: while an attack runs, a thread asks /healthz every
0.1 s, so a request that stalls the event loop shows as a slow probe.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import httpx

# A probe slower than this means one request held up every other client.
SLOW_PROBE_SECONDS = 1.0


class HealthProbe:
    """GET /healthz every `interval` seconds on a thread; remember how long each took."""

    def __init__(self, base: str, interval: float = 0.1) -> None:
        self.base = base
        self.interval = interval
        self.timings: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        self._wait_for(1)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # One more probe after the attack, then stop.
        self._wait_for(len(self.timings) + 2)
        self._stop.set()
        self._thread.join(60)

    def _wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.timings) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get("/healthz").status_code
                    if status != 200:
                        self.failures.append(f"/healthz answered {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"/healthz failed: {exc!r}")
                self.timings.append(time.monotonic() - started)
                self._stop.wait(self.interval)

    @property
    def worst(self) -> float:
        """The slowest probe, in seconds."""
        return max(self.timings, default=0.0)

    def check(self) -> None:
        """Fail unless every probe was answered, and quickly."""
        assert self.timings, "the probe never ran"
        assert not self.failures, self.failures[:5]
        slow = [round(t, 2) for t in self.timings if t > SLOW_PROBE_SECONDS]
        assert not slow, f"/healthz stalled: {len(slow)} probes over 1 s, worst {self.worst:.1f} s"
