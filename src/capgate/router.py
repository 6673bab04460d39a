"""Chooses the solver for a task.

For now the policy is the simplest that is correct: the first configured solver that accepts
the task's type and parameters. Price, speed, success and failover come with upstream
providers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from capgate.model import TaskType
from capgate.solvers.base import Solver


class Router:
    """Knows every solver this node can use and picks one per task."""

    def __init__(self, solvers: Sequence[Solver]) -> None:
        self.solvers = list(solvers)

    def choose(self, task_type: TaskType, params: Mapping[str, Any]) -> Solver | None:
        """The solver to try first, or None if nothing here can answer the task."""
        for solver in self.solvers:
            if solver.accepts(task_type, params):
                return solver
        return None

    @property
    def task_types(self) -> frozenset[TaskType]:
        """Every task type some solver here may accept."""
        return frozenset().union(*(s.types for s in self.solvers))
