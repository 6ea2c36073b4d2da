"""The in-memory store: for tests and ephemeral use; nothing survives a restart."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from app.core import Draft, Fact, PeerCard

from .base import BrokerMessage, Committed, Record, encode_data, new_epoch

__all__ = ["MemoryBroker", "MemoryStore"]

IDEMPOTENCY_KEYS = 20_000


class MemoryStore:
    shared = False

    def __init__(self, history_limit: int = 256) -> None:
        self._epoch = new_epoch()
        self._records: deque[Record] = deque(maxlen=history_limit)
        self._seq = 0
        self._keys: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
        self._bots: dict[str, bool] = {}

    @property
    def epoch(self) -> str:
        return self._epoch

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def append(self, drafts: Sequence[Draft]) -> list[Committed]:
        out: list[Committed] = []
        for draft in drafts:
            key = (draft.user_id, draft.client_id) if draft.user_id and draft.client_id else None
            if key is not None and key in self._keys:
                first_id, first_seq = self._keys[key]
                out.append(Committed(first_seq, first_id))
                continue
            self._seq += 1
            record = Record(self._seq, draft.type, encode_data(draft, self._seq))
            if draft.type == "clear":
                self._records.clear()
            self._records.append(record)
            if key is not None:
                self._keys[key] = (draft.id, self._seq)
                if len(self._keys) > IDEMPOTENCY_KEYS:
                    self._keys.popitem(last=False)
            out.append(Committed(self._seq, None, record))
        return out

    async def since(self, seq: int) -> list[Record] | None:
        if seq >= self._seq:
            return [] if seq == self._seq else None
        oldest = self._records[0].seq if self._records else self._seq + 1
        if seq + 1 < oldest:
            return None
        return [r for r in self._records if r.seq > seq]

    async def recent(self, limit: int) -> list[Record]:
        return list(self._records)[-limit:] if limit > 0 else []

    async def last_seq(self) -> int:
        return self._seq

    async def bot_states(self) -> dict[str, bool]:
        return dict(self._bots)

    async def set_bot_state(self, name: str, enabled: bool) -> None:
        self._bots[name] = enabled


class MemoryBroker:
    """One process is the whole cluster: nothing to tell, nobody to hear."""

    node = "local"

    def __init__(self) -> None:
        self._flags: dict[str, dict[str, Any]] = {}

    async def open(self) -> list[Fact]:
        return []

    async def close(self) -> None:
        return None

    def publish(self, message: BrokerMessage) -> None:
        return None

    async def listen(self) -> AsyncIterator[BrokerMessage]:
        await asyncio.Event().wait()  # never: there are no other processes
        return
        yield  # pragma: no cover (makes this an async generator)

    async def heartbeat(self, local_peers: list[PeerCard]) -> list[str]:
        return []

    async def load_flag(self, name: str) -> dict[str, Any] | None:
        return self._flags.get(name)

    async def save_flag(self, name: str, value: dict[str, Any]) -> None:
        self._flags[name] = value
