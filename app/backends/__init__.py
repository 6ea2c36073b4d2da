"""Stores behind one interface (:class:`app.backends.base.Store`), chosen by settings.

Each backend lives in its own module and is imported only when chosen, so the
SQLite and Redis drivers load only when used.
"""

from __future__ import annotations

from app.settings import Settings

from .base import Committed, Record, Store

__all__ = ["Committed", "Record", "Store", "make_store"]


def make_store(settings: Settings) -> Store:
    if settings.backend == "memory":
        from .memory import MemoryStore

        return MemoryStore(settings.history_limit)
    if settings.backend == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(settings.data_dir / "lastra.db", settings.history_limit)
    raise ValueError(f"backend {settings.backend!r} is not available yet")
