"""The SQLite store: the embedded default, one file under ``LASTRA_DATA_DIR``.

WAL mode with ``synchronous=FULL``: a batch is on disk before ``append``
returns, so an ack always means durable, even across ``kill -9``. Every query
runs on one dedicated thread so the event loop never blocks on the disk; the
hub's pipeline batches appends, so one fsync covers many messages.

Schema versions live in ``meta.schema_version``; ``MIGRATIONS[n]`` upgrades
version ``n`` to ``n + 1`` inside one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from app.core import Draft

from .base import Committed, Record, encode_data, new_epoch

__all__ = ["MIGRATIONS", "SqliteStore"]

T = TypeVar("T")
IDEMPOTENCY_KEYS = 20_000

MIGRATIONS: list[str] = [
    # 0 → 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE idempotency (
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user_id, client_id)
    );
    CREATE INDEX idempotency_seq ON idempotency (seq);
    CREATE TABLE bots (name TEXT PRIMARY KEY, enabled INTEGER NOT NULL);
    """,
]


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is open. A failed BEGIN or COMMIT may leave none, and
    ``ROLLBACK`` would then raise "no transaction is active" over the real error."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the error being raised says what went wrong
            db.execute("ROLLBACK")


class SqliteStore:
    shared = False

    def __init__(self, path: Path, history_limit: int = 256) -> None:
        self.path = path
        self.history_limit = history_limit
        self._epoch = ""
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lastra-sqlite")

    @property
    def epoch(self) -> str:
        return self._epoch

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        assert db is not None, "store is not open"
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, db)

    # ----------------------------------------------------------- lifecycle

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._db = await loop.run_in_executor(self._pool, self._connect)
        self._epoch, self._seq = await self._run(self._migrate)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> tuple[str, int]:
        has_meta = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        version = 0
        if has_meta:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
        for target in range(version, len(MIGRATIONS)):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(target + 1),)
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        row = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        if row is None:
            epoch = new_epoch()
            db.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
        else:
            epoch = row[0]
        row = db.execute("SELECT value FROM meta WHERE key='last_seq'").fetchone()
        last = int(row[0]) if row else 0
        top = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        return epoch, max(last, int(top))

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._pool, db.close)
        self._pool.shutdown(wait=True)

    async def ping(self) -> None:
        """A real, committed one-row write: a locked database, a read-only file or a full
        disk fail here as an append would, where ``SELECT 1`` would still pass."""

        def probe(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('ready_probe', '1')")
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

        await self._run(probe)

    # -------------------------------------------------------------- writes

    async def append(self, drafts: Sequence[Draft]) -> list[Committed]:
        return await self._run(lambda db: self._append(db, list(drafts)))

    def _append(self, db: sqlite3.Connection, drafts: list[Draft]) -> list[Committed]:
        out: list[Committed] = []
        seq = self._seq
        db.execute("BEGIN IMMEDIATE")
        try:
            for draft in drafts:
                keyed = draft.user_id is not None and draft.client_id is not None
                if keyed:
                    row = db.execute(
                        "SELECT id, seq FROM idempotency WHERE user_id=? AND client_id=?",
                        (draft.user_id, draft.client_id),
                    ).fetchone()
                    if row is not None:
                        out.append(Committed(int(row[1]), str(row[0])))
                        continue
                seq += 1
                data = encode_data(draft, seq)
                if draft.type == "clear":
                    db.execute("DELETE FROM events")
                db.execute("INSERT INTO events VALUES (?, ?, ?)", (seq, draft.type, data))
                if keyed:
                    db.execute(
                        "INSERT INTO idempotency VALUES (?, ?, ?, ?)",
                        (draft.user_id, draft.client_id, draft.id, seq),
                    )
                out.append(Committed(seq, None, Record(seq, draft.type, data)))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (str(seq),))
            db.execute("DELETE FROM events WHERE seq <= ?", (seq - self.history_limit,))
            db.execute("DELETE FROM idempotency WHERE seq <= ?", (seq - IDEMPOTENCY_KEYS,))
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)  # never hides the real error (locked, disk full) behind its own
            raise
        self._seq = seq
        return out

    async def set_bot_state(self, name: str, enabled: bool) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO bots VALUES (?, ?)", (name, int(enabled)))

        await self._run(write)

    # --------------------------------------------------------------- reads

    async def since(self, seq: int) -> list[Record] | None:
        last = self._seq
        if seq >= last:  # nothing missed (a restart storm's every client): no thread hop
            return [] if seq == last else None

        def read(db: sqlite3.Connection) -> list[Record] | None:
            oldest = db.execute("SELECT MIN(seq) FROM events").fetchone()[0]
            if oldest is None or seq + 1 < oldest:
                return None
            rows = db.execute(
                "SELECT seq, type, data FROM events WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
            return [Record(int(s), str(t), bytes(d)) for s, t, d in rows]

        return await self._run(read)

    async def recent(self, limit: int) -> list[Record]:
        def read(db: sqlite3.Connection) -> list[Record]:
            rows = db.execute(
                "SELECT seq, type, data FROM events ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
            return [Record(int(s), str(t), bytes(d)) for s, t, d in reversed(rows)]

        return await self._run(read)

    async def last_seq(self) -> int:
        return self._seq

    async def bot_states(self) -> dict[str, bool]:
        def read(db: sqlite3.Connection) -> dict[str, bool]:
            return {str(n): bool(e) for n, e in db.execute("SELECT name, enabled FROM bots")}

        return await self._run(read)
