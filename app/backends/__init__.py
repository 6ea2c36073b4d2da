"""Stores behind one interface (:class:`app.backends.base.Store`), chosen by settings.

Each backend lives in its own module and is imported only when chosen, so the
SQLite and Redis drivers load only when used.
"""

from __future__ import annotations

from app.settings import Settings

from .base import Broker, Committed, Record, Store

__all__ = ["Broker", "Committed", "Record", "Store", "make_broker", "make_store"]


def make_store(settings: Settings) -> Store:
    if settings.backend == "memory":
        from .memory import MemoryStore

        return MemoryStore(settings.history_limit)
    if settings.backend == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(settings.data_dir / "lastra.db", settings.history_limit)
    from .redis import RedisStore

    return RedisStore(settings.redis_url, settings.history_limit)


def make_broker(settings: Settings) -> Broker:
    """The fan-out between processes: only Redis has other processes to reach."""
    if settings.backend == "redis":
        from .redis_broker import RedisBroker

        return RedisBroker(settings.redis_url, node_ttl=settings.node_ttl)
    from .memory import MemoryBroker

    return MemoryBroker()
