"""Chooses the solvers for a task, in order, and keeps each solver's health.

Per task the candidates are the solvers that accept its type and parameters (only the one it
names, when it names a `provider`), ordered by a policy:

- priority: the configured order (test keys, local OCR, then providers as listed);
- cheapest: the lowest price for the task's type (local solvers cost nothing);
- fastest: the lowest recent p90 solve time (a solver not yet measured goes first);
- reliable: the highest recent success rate (a solver not yet measured counts as perfect).

The policy is the server's or the key's (`routing_policy`, `key_policies`), unless the task
names its own in the reserved parameter `routingPolicy` (AnySolver's per-request
`selectionMode` arrives as one); a value that is no policy is ignored.

Ties keep the configured order. A circuit breaker takes a solver out after
`breaker_failures` failures in a row that were its own fault, and after the cooldown lets
one task probe it: success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from capgate.config import POLICIES
from capgate.model import TaskType
from capgate.solvers.base import Solver

_WINDOW = 50  # Outcomes remembered per solver for its p90 and success rate.
# AnySolver's word for "let the service choose" (seed 004: "automatic routing").
_AUTO = frozenset({"", "auto", "automatic"})
# The task parameter that overrides the policy for that one task.
POLICY_PARAM = "routingPolicy"


@dataclasses.dataclass
class Health:
    """What this node has seen of one solver lately."""

    outcomes: collections.deque[tuple[bool, float]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=_WINDOW)
    )
    failures_in_a_row: int = 0
    open_until: float | None = None
    probing: bool = False
    solved: int = 0
    failed: int = 0
    spent: int = 0

    @property
    def success_rate(self) -> float | None:
        """Share of recent attempts that answered (None before the first)."""
        if not self.outcomes:
            return None
        return sum(ok for ok, _ in self.outcomes) / len(self.outcomes)

    @property
    def p90_seconds(self) -> float | None:
        """The 90th percentile of recent successful solve times (None before the first)."""
        times = sorted(seconds for ok, seconds in self.outcomes if ok)
        if not times:
            return None
        return times[min(len(times) - 1, math.ceil(0.9 * len(times)) - 1)]

    def state(self, now: float) -> str:
        """closed (in use), open (taken out) or half-open (waiting for a probe)."""
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until and not self.probing else "half-open"


class Router:
    """Knows every solver this node can use and orders them per task."""

    def __init__(
        self,
        solvers: Sequence[Solver],
        breaker_failures: int = 5,
        breaker_cooldown_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.solvers = list(solvers)
        self.health: dict[str, Health] = {s.name: Health() for s in self.solvers}
        self.breaker_failures = max(1, breaker_failures)
        self.breaker_cooldown = breaker_cooldown_seconds
        self._monotonic = monotonic

    def named(self, name: str | None) -> Solver | None:
        """The solver with this name, if this node has it."""
        return next((s for s in self.solvers if s.name == name), None)

    def unknown_provider(self, params: Mapping[str, Any]) -> str | None:
        """The provider a task names that this node does not have, if it names one."""
        wanted = _wanted(params)
        if wanted is None or self.named(wanted) is not None:
            return None
        return wanted

    def choose(self, task_type: TaskType, params: Mapping[str, Any]) -> Solver | None:
        """The first solver, in configured order, that can take the task (None: nothing)."""
        candidates = self.candidates(task_type, params, "priority")
        return candidates[0] if candidates else None

    def candidates(
        self, task_type: TaskType, params: Mapping[str, Any], policy: str
    ) -> list[Solver]:
        """Every solver that can take the task, in the order the policy prefers (the
        task's own `routingPolicy`, if it names one, before the one passed in)."""
        own = params.get(POLICY_PARAM)
        if isinstance(own, str) and own in POLICIES:
            policy = own
        wanted = _wanted(params)
        able = [
            s
            for s in self.solvers
            if s.accepts(task_type, params) and (wanted is None or s.name == wanted)
        ]
        if policy == "cheapest":
            able.sort(key=lambda s: _price_rank(s, task_type))
        elif policy == "fastest":
            able.sort(key=lambda s: self.health[s.name].p90_seconds or 0.0)
        elif policy == "reliable":
            able.sort(key=lambda s: -(self.health[s.name].success_rate or 1.0))
        return able

    def allow(self, solver: Solver) -> bool:
        """Whether the breaker lets this solver take a task now (claiming the probe if due)."""
        health = self.health[solver.name]
        if health.open_until is None:
            return True
        if health.probing or self._monotonic() < health.open_until:
            return False
        health.probing = True
        return True

    def record(self, solver: Solver, ok: bool, seconds: float, *, its_fault: bool) -> None:
        """One attempt's outcome; `its_fault` failures count toward the breaker."""
        health = self.health[solver.name]
        health.outcomes.append((ok, seconds))
        health.probing = False
        if ok:
            health.solved += 1
            health.failures_in_a_row = 0
            health.open_until = None
            return
        health.failed += 1
        if not its_fault:
            if health.open_until is not None:  # A probe that reached the provider: it is up.
                health.open_until = None
                health.failures_in_a_row = 0
            return
        health.failures_in_a_row += 1
        if health.open_until is not None or health.failures_in_a_row >= self.breaker_failures:
            health.open_until = self._monotonic() + self.breaker_cooldown

    def charge(self, solver: Solver, task_type: TaskType) -> None:
        """Count what an answered task cost the operator at this solver."""
        price = solver.price(task_type)
        if price:
            self.health[solver.name].spent += price

    def breaker_state(self, name: str) -> str:
        """The breaker of one solver: closed, open or half-open."""
        return self.health[name].state(self._monotonic())

    @property
    def task_types(self) -> frozenset[TaskType]:
        """Every task type some solver here may accept."""
        return frozenset().union(*(s.types for s in self.solvers))


def _wanted(params: Mapping[str, Any]) -> str | None:
    wanted = params.get("provider")
    if not isinstance(wanted, str) or wanted.strip().lower() in _AUTO:
        return None
    return wanted.strip()


def _price_rank(solver: Solver, task_type: TaskType) -> float:
    price = solver.price(task_type)
    return math.inf if price is None else price
