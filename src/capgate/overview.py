"""What an operator sees: traffic, solvers and providers, spend per key, recent failures.

Gathered from the store (so every node shows the same tasks, whichever solved them) and from
this node's router (breaker states and provider spend are per process). Served as JSON at
/admin/overview and drawn by the dashboard.
"""

from __future__ import annotations

import math
from collections import defaultdict

import msgspec

from capgate.learning.report import SiteView, gather_sites
from capgate.model import Task, TaskStatus
from capgate.router import Router
from capgate.store.base import Store

MINUTES = 30  # The traffic chart's width.
RECENT = 1000  # Tasks read for the per-solver figures and the chart.


class SolverView(msgspec.Struct):
    """One solver: local, an upstream provider, or a remote worker."""

    name: str
    kind: str
    # closed / open / half-open for this node's solvers; "-" for workers.
    breaker: str
    answered: int
    failed: int
    success_ratio: float | None
    p50_seconds: float | None
    p90_seconds: float | None
    spend: int


class KeyView(msgspec.Struct):
    """One API key's money (never its secret)."""

    id: int
    name: str
    balance: int
    spent: int
    worker: bool


class TaskView(msgspec.Struct):
    """One recent task, without its image or answer."""

    id: int
    key_id: int
    type: str
    status: str
    solver: str | None
    attempts: int
    created_at: float
    seconds: float | None
    error_code: str | None
    error_description: str | None


class Overview(msgspec.Struct):
    """Everything the dashboard shows, at one instant."""

    now: float
    queue_depth: int
    tasks_per_minute: list[int]
    solvers: list[SolverView]
    keys: list[KeyView]
    recent: list[TaskView]
    failures: list[TaskView]
    # Learning (docs/learning.md): every site seen, with its model and figures.
    sites: list[SiteView] = []


async def gather(store: Store, router: Router, now: float, recent: int = 20) -> Overview:
    """Read the store and the router into one overview, with `recent` recent tasks."""
    tasks = await store.recent_tasks(RECENT)
    per_minute = [0] * MINUTES
    for task in tasks:
        age = int((now - task.created_at) // 60)
        if 0 <= age < MINUTES:
            per_minute[MINUTES - 1 - age] += 1
    keys = [KeyView(k.id, k.name, k.balance, k.spent, k.worker) for k in await store.list_keys()]
    views = [_task_view(t) for t in tasks]
    return Overview(
        now=now,
        queue_depth=await store.queue_depth(),
        tasks_per_minute=per_minute,
        solvers=_solvers(tasks, router),
        keys=keys,
        recent=views[:recent],
        failures=[v for v in views if v.status == "failed"][:recent],
        sites=await gather_sites(store),
    )


def _solvers(tasks: list[Task], router: Router) -> list[SolverView]:
    outcomes: defaultdict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        if task.status.is_final and task.solver and task.solver != "none":
            outcomes[task.solver].append(task)
    names = [s.name for s in router.solvers] + sorted(set(outcomes) - set(router.health))
    views: list[SolverView] = []
    for name in names:
        done = outcomes.get(name, [])
        answered = [t for t in done if t.status is TaskStatus.READY]
        times = sorted(_seconds(t) or 0.0 for t in answered)
        health = router.health.get(name)
        views.append(
            SolverView(
                name=name,
                kind=_kind(name),
                breaker=router.breaker_state(name) if health is not None else "-",
                answered=len(answered),
                failed=len(done) - len(answered),
                success_ratio=len(answered) / len(done) if done else None,
                p50_seconds=_percentile(times, 0.5),
                p90_seconds=_percentile(times, 0.9),
                spend=health.spent if health is not None else 0,
            )
        )
    return views


def _kind(name: str) -> str:
    if name.startswith("worker:"):
        return "worker"
    return "local" if name in ("ocr", "testkeys") else "provider"


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, math.ceil(share * len(values)) - 1)]


def _seconds(task: Task) -> float | None:
    if task.finished_at is None:
        return None
    return max(0.0, task.finished_at - (task.started_at or task.created_at))


def _task_view(task: Task) -> TaskView:
    return TaskView(
        id=task.id,
        key_id=task.key_id,
        type=task.type.value,
        status=task.status.name.lower(),
        solver=task.solver,
        attempts=task.attempts,
        created_at=task.created_at,
        seconds=_seconds(task),
        error_code=task.error_code.value if task.error_code else None,
        error_description=task.error_description,
    )
