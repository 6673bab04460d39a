"""Upstream providers: the commercial services capgate can forward tasks to."""

from __future__ import annotations

from capgate.providers.kinds import KINDS, Kind

__all__ = ["KINDS", "Kind"]
