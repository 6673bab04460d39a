"""Prometheus metrics, kept in this process and rendered in the text exposition format.

No key, secret or task content is ever a label: metrics are safe to show any operator.
With `serve --workers N` each process counts its own requests; scrape each, or sum.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from capgate.model import MICROS

if TYPE_CHECKING:
    from capgate.learning.report import SiteView
    from capgate.learning.served import ServedModels
    from capgate.router import Router

# Solve-time buckets in seconds: local OCR answers in milliseconds, humans in tens of seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

Labels = tuple[tuple[str, str], ...]


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms are."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value


class Metrics:
    """The counters capgate keeps about its requests and tasks."""

    def __init__(self) -> None:
        self.requests: defaultdict[Labels, int] = defaultdict(int)
        self.tasks_created: defaultdict[Labels, int] = defaultdict(int)
        self.tasks_finished: defaultdict[Labels, int] = defaultdict(int)
        self.solve_seconds: defaultdict[Labels, Histogram] = defaultdict(Histogram)

    def request(self, dialect: str, code: str) -> None:
        """One answered request, by dialect and outcome ("ok" or the error code)."""
        self.requests[(("dialect", dialect), ("code", code))] += 1

    def task_created(self, task_type: str) -> None:
        """One task accepted."""
        self.tasks_created[(("type", task_type),)] += 1

    def task_finished(self, task_type: str, status: str, solver: str, seconds: float) -> None:
        """One task ready or failed, with the time its solver took."""
        self.tasks_finished[(("type", task_type), ("status", status), ("solver", solver))] += 1
        self.solve_seconds[(("solver", solver),)].observe(max(0.0, seconds))

    def mean_solve_seconds(self, solvers: Iterable[str]) -> float | None:
        """The mean time these solvers took per finished task (None before any finished)."""
        total, count = 0.0, 0
        for name in solvers:
            histogram = self.solve_seconds.get((("solver", name),))
            if histogram is not None:
                total += histogram.total
                count += sum(histogram.counts)
        return total / count if count else None

    def render(self, gauges: dict[str, tuple[str, float]], router: Router | None = None) -> bytes:
        """The text exposition format, with the given gauges (name: (help, value)) and the
        health of each solver the router knows added."""
        lines: list[str] = []
        _counter(lines, "capgate_requests_total", "Requests answered", self.requests)
        _counter(lines, "capgate_tasks_created_total", "Tasks accepted", self.tasks_created)
        _counter(
            lines, "capgate_tasks_finished_total", "Tasks ready or failed", self.tasks_finished
        )
        name = "capgate_solve_seconds"
        lines += [f"# HELP {name} Time from lease to answer", f"# TYPE {name} histogram"]
        for labels, histogram in sorted(self.solve_seconds.items()):
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {cumulative}")
            lines.append(f"{name}_sum{_labels(labels)} {histogram.total}")
            lines.append(f"{name}_count{_labels(labels)} {cumulative}")
        for gauge, (help_text, value) in gauges.items():
            lines += [f"# HELP {gauge} {help_text}", f"# TYPE {gauge} gauge", f"{gauge} {value}"]
        if router is not None:
            _solver_health(lines, router)
        return ("\n".join(lines) + "\n").encode()


def _solver_health(lines: list[str], router: Router) -> None:
    """Per solver: breaker up or not, recent success rate and p90, attempts, spend (this
    process)."""
    up: dict[Labels, float] = {}
    success: dict[Labels, float] = {}
    p90: dict[Labels, float] = {}
    attempts: dict[Labels, float] = {}
    spend: dict[Labels, float] = {}
    for name, health in router.health.items():
        solver = (("solver", name),)
        up[solver] = float(router.breaker_state(name) != "open")
        if health.success_rate is not None:
            success[solver] = health.success_rate
        if health.p90_seconds is not None:
            p90[solver] = health.p90_seconds
        attempts[(*solver, ("outcome", "answered"))] = health.solved
        attempts[(*solver, ("outcome", "failed"))] = health.failed
        spend[solver] = health.spent / MICROS
    help_up = "1 while the solver's circuit breaker lets tasks in"
    _series(lines, "capgate_solver_up", "gauge", help_up, up)
    _series(
        lines, "capgate_solver_success_ratio", "gauge", "Share of recent attempts answered", success
    )
    _series(
        lines, "capgate_solver_p90_seconds", "gauge", "Recent p90 time of answered attempts", p90
    )
    _series(lines, "capgate_solver_attempts_total", "counter", "Attempts by outcome", attempts)
    _series(
        lines, "capgate_solver_spend_total", "counter", "What answered tasks cost, in USD", spend
    )


def _counter(lines: list[str], name: str, help_text: str, values: dict[Labels, int]) -> None:
    _series(lines, name, "counter", help_text, values)


def _series(
    lines: list[str], name: str, kind: str, help_text: str, values: Mapping[Labels, float]
) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [f"{name}{_labels(labels)} {value}" for labels, value in sorted(values.items())]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def site_metrics(sites: Sequence[SiteView], served: ServedModels) -> bytes:
    """Per site (docs/learning.md): labels, answers by where they came from, spend saved,
    checks of its model, the version this node serves and its accuracies."""
    labels: dict[Labels, float] = {}
    answers: dict[Labels, float] = {}
    saved: dict[Labels, float] = {}
    checks: dict[Labels, float] = {}
    version: dict[Labels, float] = {}
    heldout: dict[Labels, float] = {}
    live: dict[Labels, float] = {}
    for v in sites:
        site = (("site", v.site),)
        labels[site] = v.labels
        answers[(*site, ("by", "model"))] = v.by_model
        answers[(*site, ("by", "generalist"))] = v.local - v.by_model
        answers[(*site, ("by", "upstream"))] = v.upstream
        saved[site] = v.saved / MICROS
        checks[(*site, ("outcome", "agreed"))] = v.audits_agreed
        checks[(*site, ("outcome", "disagreed"))] = v.audits - v.audits_agreed
        checks[(*site, ("outcome", "reported_wrong"))] = v.reported_wrong
        if v.heldout_accuracy is not None:
            heldout[site] = v.heldout_accuracy
        if v.live_accuracy is not None:
            live[site] = v.live_accuracy
    for name, model in served.serving().items():
        version[(("site", name),)] = model.version
    lines: list[str] = []
    _series(lines, "capgate_site_labels", "gauge", "Labels kept per site", labels)
    _series(lines, "capgate_site_answers_total", "counter", "Site tasks answered, by whom", answers)
    _series(lines, "capgate_site_saved_total", "counter", "Upstream spend saved, in USD", saved)
    _series(lines, "capgate_site_checks_total", "counter", "Checks of site models", checks)
    _series(
        lines,
        "capgate_site_model_version",
        "gauge",
        "The registry version this node serves per site (* : the generalist)",
        version,
    )
    _series(
        lines, "capgate_site_heldout_accuracy", "gauge", "Serving model, held-out labels", heldout
    )
    _series(lines, "capgate_site_live_accuracy", "gauge", "Serving model, checks", live)
    return ("\n".join(lines) + "\n").encode()
