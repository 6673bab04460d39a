"""What every solver is: a name, the tasks it accepts, and an async solve."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from capgate.model import ErrorCode, Solution, Task, TaskType


class SolveError(Exception):
    """A solver could not answer; `retry` says whether another attempt may help."""

    def __init__(self, code: ErrorCode, description: str, *, retry: bool = False) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.retry = retry


class Solver(abc.ABC):
    """One way of answering tasks."""

    name: str
    # The task types this solver may accept; `accepts` decides for each task.
    types: frozenset[TaskType]
    # Free solvers (the vendors' test keys) cost the client nothing.
    free: bool = False
    # How long one attempt here may take before the task moves on (0: until its deadline).
    attempt_seconds: float = 0.0
    # An upstream service answers here: its answers may be kept as training labels.
    upstream: bool = False

    @abc.abstractmethod
    def accepts(self, task_type: TaskType, params: Mapping[str, Any]) -> bool:
        """True if this solver can answer a task of this type with these parameters."""

    @abc.abstractmethod
    async def solve(self, task: Task) -> Solution:
        """Answer the task or raise SolveError."""

    def price(self, task_type: TaskType) -> int | None:
        """What one task costs the operator here (None: unknown); local solving is free."""
        return 0

    async def report_incorrect(self, task: Task) -> bool:
        """Pass a client's report of a wrong answer on; False when there is nobody to tell."""
        return False

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare resources (process pools, connections) before the first task."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` took."""
