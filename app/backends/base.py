"""The one small interface every store implements (memory, SQLite, Redis).

A store keeps what must outlive a connection: the durable events with their
``seq`` (the history ring), the ``epoch``, the idempotency keys of recent
``clientId``s, and the bots' enable states. The hub appends drafts in batches
and only acks a message after ``append`` returned.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from app.core import Draft, Fact, PeerCard

__all__ = [
    "Broker",
    "BrokerMessage",
    "Committed",
    "FactMessage",
    "FrameMessage",
    "Record",
    "SendMessage",
    "SharedStore",
    "Store",
    "StoreUnavailable",
    "SyncMessage",
    "encode_data",
    "new_epoch",
]


class StoreUnavailable(Exception):
    """The store or broker cannot be reached right now; retry later (clients: 1013)."""


@dataclass(frozen=True, slots=True)
class Record:
    """A stored durable event: its ``data`` is the JSON the clients receive (with ``seq``)."""

    seq: int
    type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Committed:
    """The result of appending one draft.

    ``first_id`` is set when the draft repeated an earlier ``clientId`` of the same
    user: then nothing was stored and ``seq`` is the first copy's.
    """

    seq: int
    first_id: str | None = None
    record: Record | None = None


def encode_data(draft: Draft, seq: int) -> bytes:
    """The event's data as stored and sent: the draft's fields plus ``seq``.

    Right-sized: orjson returns its whole working buffer (4 KiB at least), and
    stores keep these bytes for the history window.
    """
    return memoryview(orjson.dumps({**draft.data, "seq": seq})).tobytes()


def new_epoch() -> str:
    return uuid.uuid4().hex[:12]


class Store(Protocol):
    """Durable history and small state. All methods may be called concurrently.

    ``shared`` is False for stores only this process writes (memory, SQLite): the
    hub then broadcasts each committed event itself. A shared store (Redis) is
    a :class:`SharedStore`: every process delivers durable events from
    :meth:`SharedStore.tail`, so all clients see one ``seq`` order.
    """

    shared: bool

    @property
    def epoch(self) -> str: ...

    async def open(self) -> None:
        """Connect / create; after this ``epoch`` is valid."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot serve right now (``/readyz``)."""

    async def append(self, drafts: Sequence[Draft]) -> list[Committed]:
        """Store drafts in order, assigning consecutive seqs; one result per draft.

        A ``clear`` draft deletes every earlier event. History beyond the store's
        limit is trimmed; seqs never repeat or go back.
        """

    async def since(self, seq: int) -> list[Record] | None:
        """Every record after ``seq`` in order, or None when some are no longer stored."""

    async def recent(self, limit: int) -> list[Record]:
        """The newest ``limit`` records, oldest first."""

    async def last_seq(self) -> int: ...

    async def bot_states(self) -> dict[str, bool]: ...

    async def set_bot_state(self, name: str, enabled: bool) -> None: ...


class SharedStore(Store, Protocol):
    def tail(self, after_seq: int) -> AsyncIterator[list[Record]]:
        """Every record after ``after_seq``, as they are appended by any process, forever.

        Yields an empty list after the epoch changed (the store was wiped): the
        caller must then close its connections so clients resync.
        """
        ...


@dataclass(frozen=True, slots=True)
class FactMessage:
    """A state change for the other processes' cores (:meth:`Chat.apply`)."""

    fact: Fact


@dataclass(frozen=True, slots=True)
class FrameMessage:
    """A non-durable broadcast, encoded once by its sender: every client gets ``text``."""

    type: str
    text: str


@dataclass(frozen=True, slots=True)
class SendMessage:
    """An event for one peer held by another process (a WebRTC signal)."""

    peer_id: str
    type: str
    text: str


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """After a lost link (from the broker itself): the other processes' peers are ``peers``."""

    peers: tuple[PeerCard, ...]


#: what travels between processes; only a broker's wire (Redis) turns it into dicts
BrokerMessage = FactMessage | FrameMessage | SendMessage | SyncMessage


class Broker(Protocol):
    """Fan-out between server processes: publish and listen (the socketio pub/sub shape).

    Messages are :data:`BrokerMessage` values. Every process has a ``node`` id and
    never receives its own messages. ``publish`` never blocks; order is kept.
    """

    node: str

    async def open(self) -> list[Fact]:
        """Join; returns facts describing the live shared state (other processes' peers)."""

    async def close(self) -> None: ...

    def publish(self, message: BrokerMessage) -> None: ...

    def listen(self) -> AsyncIterator[BrokerMessage]:
        """Other processes' messages, in order; after a reconnect, facts that resync."""
        ...

    async def heartbeat(self, local_peers: list[PeerCard]) -> list[str]:
        """Prove this process alive; returns dead processes whose peers this one must reap."""

    async def load_flag(self, name: str) -> dict[str, Any] | None:
        """A flag every process shares (the rollout guard's state), or None if never set."""

    async def save_flag(self, name: str, value: dict[str, Any]) -> None:
        """Set a shared flag: every process's next :meth:`load_flag` sees it."""
