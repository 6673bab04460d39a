"""What a JSON dialect module provides: pure functions from vendor shapes to internal types
and back. A dialect holds no business logic."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from capgate.model import CapgateError, Key, Task, TaskSpec, TaskType

if TYPE_CHECKING:
    from capgate.service import QueueStats, SpendingRecord


class CreateRequest(msgspec.Struct, frozen=True):
    """A parsed createTask request: the key and the task object, not yet validated."""

    client_key: str
    task: dict[str, Any]


class ReportRequest(msgspec.Struct, frozen=True):
    """A parsed report about an answer: which task, and whether the answer was correct."""

    client_key: str
    task_id: int
    correct: bool


class SpendingQuery(msgspec.Struct, frozen=True):
    """A parsed getSpendingStats request: whose spending, from when, and which of it."""

    client_key: str
    start: float | None = None  # None: the 24 hours up to now
    types: frozenset[TaskType] | None = None  # None: every queue
    soft_id: str | None = None
    ip: str | None = None


class JsonDialect(Protocol):
    """The functions (and constants) a createTask / getTaskResult dialect module defines."""

    # How long this vendor keeps results (None: the server's retention_seconds).
    RETENTION_SECONDS: float | None
    # Task types whose createTask waits for the answer and returns it (CapSolver's images).
    SYNC_TYPES: frozenset[TaskType]
    # Report endpoints: path name -> the verdict it carries (None: read it from the body).
    REPORT_PATHS: dict[str, bool | None]

    def parse_create(self, body: bytes) -> CreateRequest:
        """Read a createTask request."""
        ...

    def parse_task(self, task: dict[str, Any]) -> TaskSpec:
        """Translate the vendor's task object."""
        ...

    def parse_result(self, body: bytes) -> tuple[str, int]:
        """Read a getTaskResult request: key and task id."""
        ...

    def parse_balance(self, body: bytes) -> str:
        """Read a getBalance request: the key."""
        ...

    def parse_report(self, body: bytes, verdict: bool | None) -> ReportRequest:
        """Read a report request; `verdict` is what the path says, if it says."""
        ...

    def render_created(self, task: Task) -> bytes:
        """The createTask answer (for SYNC_TYPES, the task may already be final)."""
        ...

    def render_result(self, task: Task) -> bytes:
        """The getTaskResult answer."""
        ...

    def render_balance(self, key: Key) -> bytes:
        """The getBalance answer."""
        ...

    def render_reported(self, task: Task) -> bytes:
        """The answer to an accepted report."""
        ...

    def render_error(self, error: CapgateError) -> bytes:
        """An error in the dialect's shape."""
        ...


@runtime_checkable
class StatsDialect(Protocol):
    """A dialect that also answers Anti-Captcha's getQueueStats and getSpendingStats."""

    def parse_queue_stats(self, body: bytes) -> TaskType | None:
        """Read a getQueueStats request: the queue's task type (None: a documented queue
        of a kind capgate serves no task type for)."""
        ...

    def render_queue_stats(self, stats: QueueStats) -> bytes:
        """The getQueueStats answer."""
        ...

    def parse_spending_stats(self, body: bytes) -> SpendingQuery:
        """Read a getSpendingStats request."""
        ...

    def render_spending_stats(self, records: list[SpendingRecord]) -> bytes:
        """The getSpendingStats answer."""
        ...


@runtime_checkable
class ImageGroups(Protocol):
    """A dialect whose image tasks may carry several images, each read as a task of its
    own and answered together (CapSolver's `images`)."""

    def parse_tasks(self, task: dict[str, Any]) -> list[TaskSpec]:
        """Translate the task object into one spec per image (one, for every other task)."""
        ...

    def group_of(self, task: Task) -> list[int]:
        """The ids of the other tasks answered with this one (none for a lone task)."""
        ...

    def grouped(self, spec: TaskSpec, others: list[int]) -> TaskSpec:
        """The first image's spec, marked with the ids of the tasks of the other images."""
        ...

    def render_group(self, first: Task, others: list[Task]) -> bytes:
        """The createTask or getTaskResult answer for a group of images."""
        ...
