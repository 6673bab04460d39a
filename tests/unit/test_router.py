"""The router's policies and circuit breaker, with solvers that only say what they accept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from capgate.model import Solution, Task, TaskType
from capgate.router import Router
from capgate.solvers.base import Solver

IMAGE = TaskType.IMAGE_TO_TEXT


class Named(Solver):
    def __init__(self, name: str, price: int | None = 0) -> None:
        self.name = name
        self.types = frozenset({IMAGE})
        self._price = price

    def accepts(self, task_type: TaskType, params: Mapping[str, Any]) -> bool:
        return task_type in self.types

    def price(self, task_type: TaskType) -> int | None:
        return self._price

    async def solve(self, task: Task) -> Solution:
        raise NotImplementedError


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def names(solvers: list[Solver]) -> list[str]:
    return [s.name for s in solvers]


def test_policies_order_the_candidates() -> None:
    a, b, c = Named("a", 3000), Named("b", None), Named("c", 1000)
    router = Router([a, b, c])
    assert names(router.candidates(IMAGE, {}, "priority")) == ["a", "b", "c"]
    assert names(router.candidates(IMAGE, {}, "cheapest")) == ["c", "a", "b"]
    for _ in range(4):
        router.record(a, True, 2.0, its_fault=False)
        router.record(c, True, 0.5, its_fault=False)
    router.record(c, False, 0.1, its_fault=True)
    # b is unmeasured: fastest and most reliable until measured.
    assert names(router.candidates(IMAGE, {}, "fastest")) == ["b", "c", "a"]
    assert names(router.candidates(IMAGE, {}, "reliable")) == ["a", "b", "c"]
    assert router.health["c"].success_rate == pytest.approx(0.8)


def test_a_named_provider_is_the_only_candidate() -> None:
    router = Router([Named("a"), Named("b")])
    assert names(router.candidates(IMAGE, {"provider": "b"}, "priority")) == ["b"]
    assert names(router.candidates(IMAGE, {"provider": "auto"}, "priority")) == ["a", "b"]
    assert router.unknown_provider({"provider": "zzz"}) == "zzz"
    assert router.unknown_provider({"provider": "b"}) is None
    assert router.choose(IMAGE, {"provider": "zzz"}) is None


def test_the_breaker_opens_after_failures_in_a_row_and_one_probe_closes_it() -> None:
    clock = FakeTime()
    solver = Named("p")
    router = Router([solver], breaker_failures=3, breaker_cooldown_seconds=10, monotonic=clock)
    router.record(solver, False, 1, its_fault=True)
    router.record(solver, False, 1, its_fault=False)  # unsolvable: not the provider's fault
    router.record(solver, False, 1, its_fault=True)
    assert router.allow(solver) and router.breaker_state("p") == "closed"
    router.record(solver, False, 1, its_fault=True)
    assert router.breaker_state("p") == "open" and not router.allow(solver)
    clock.now += 10
    assert router.breaker_state("p") == "half-open"
    assert router.allow(solver)  # the probe
    assert not router.allow(solver)  # only one at a time
    router.record(solver, False, 1, its_fault=True)  # the probe failed: open again
    assert not router.allow(solver)
    clock.now += 10
    assert router.allow(solver)
    router.record(solver, True, 1, its_fault=False)
    assert router.breaker_state("p") == "closed" and router.allow(solver)


def test_spend_counts_only_priced_answers() -> None:
    cheap, unknown = Named("cheap", 500), Named("unknown", None)
    router = Router([cheap, unknown])
    router.charge(cheap, IMAGE)
    router.charge(unknown, IMAGE)
    assert (router.health["cheap"].spent, router.health["unknown"].spent) == (500, 0)


def test_a_task_may_name_its_own_policy() -> None:
    # AnySolver's per-request selectionMode arrives as the reserved `routingPolicy` param.
    a, b, c = Named("a", 3000), Named("b", None), Named("c", 1000)
    router = Router([a, b, c])
    assert names(router.candidates(IMAGE, {"routingPolicy": "cheapest"}, "priority")) == [
        "c",
        "a",
        "b",
    ]
    assert names(router.candidates(IMAGE, {"routingPolicy": "priority"}, "cheapest")) == [
        "a",
        "b",
        "c",
    ]
    # Anything else is no policy: the one passed in stands.
    for junk in ("autoCheapest", "", 7, None):
        assert names(router.candidates(IMAGE, {"routingPolicy": junk}, "cheapest")) == [
            "c",
            "a",
            "b",
        ]
