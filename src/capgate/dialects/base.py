"""What a JSON dialect module provides: pure functions from vendor shapes to internal types
and back. A dialect holds no business logic."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from capgate.model import CapgateError, Key, Task, TaskSpec


class CreateRequest(msgspec.Struct, frozen=True):
    """A parsed createTask request: the key and the task object, not yet validated."""

    client_key: str
    task: dict[str, Any]


class JsonDialect(Protocol):
    """The functions a createTask / getTaskResult dialect module defines."""

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

    def render_created(self, task: Task) -> bytes:
        """The createTask answer."""
        ...

    def render_result(self, task: Task) -> bytes:
        """The getTaskResult answer."""
        ...

    def render_balance(self, key: Key) -> bytes:
        """The getBalance answer."""
        ...

    def render_error(self, error: CapgateError) -> bytes:
        """An error in the dialect's shape."""
        ...
