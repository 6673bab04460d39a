"""Stores: where tasks, the queue, leases, keys and balances are kept."""

from __future__ import annotations

from pathlib import Path

from capgate.store.base import Store
from capgate.store.memory import MemoryStore
from capgate.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "store_from_url"]


def store_from_url(
    url: str, data_dir: Path, *, server_time: bool = True, durability: str = "process"
) -> Store:
    """Build the store a URL names: 'sqlite' (the default file under the data directory),
    'sqlite:///path/to/file.db', 'redis://host:port/db', or 'memory'.

    `server_time`: a shared store measures time by its own clock (Redis' TIME); off for a
    server whose clock the tests move. `durability`: "process", or "power" (every commit
    fsync'd before it is answered; the SQLite store only, see docs/guarantees.md)."""
    if url in ("", "sqlite"):
        return SqliteStore(data_dir / "capgate.db", durability)
    if url.startswith("sqlite:///"):
        return SqliteStore(Path(url.removeprefix("sqlite:///")), durability)
    if durability != "process":
        raise ValueError(f'durability = "{durability}" needs the SQLite store')
    if url == "memory":
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from capgate.store.redis import RedisStore

        return RedisStore(url, server_time=server_time)
    raise ValueError(
        f"unknown store {url!r}: use 'sqlite', 'sqlite:///PATH', 'redis://HOST:PORT/DB' or 'memory'"
    )
