"""One client connection's outbound side, and its life as one state machine.

A connection's states and the only moves between them:

    SYNCING  + start(greeting)  → OPEN      (the greeting, then what was buffered)
    SYNCING  + close(code)      → CLOSING   (refused or shut down before it was ready)
    OPEN     + close(code)      → CLOSING   (the writer drains, then sends ``code``)
    CLOSING  + close / start    → CLOSING   (no effect: the first code stands)

Any other move raises :class:`InvalidTransition` (a bug in the caller). Whether
the connection holds a place under the hub's caps is the hub's accounting
(``admitted``), not a state: it is given back exactly once, whichever way the
connection ends.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable
from typing import Final

from app.core import CloseCode, Identity, Peer
from app.wire import Frame

__all__ = ["ConnState", "Connection", "InvalidTransition"]


class ConnState(enum.Enum):
    SYNCING = "syncing"  #: registered; the greeting is being built, broadcasts are buffered
    OPEN = "open"  #: frames flow to the writer
    CLOSING = "closing"  #: a close code is set; the writer drains and ends


#: state → the states it may move to
TRANSITIONS: Final[dict[ConnState, frozenset[ConnState]]] = {
    ConnState.SYNCING: frozenset({ConnState.OPEN, ConnState.CLOSING}),
    ConnState.OPEN: frozenset({ConnState.CLOSING}),
    ConnState.CLOSING: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A connection was asked to move where its table does not allow."""


class Connection:
    """One client connection's outbound side: a bounded queue a writer drains.

    ``push`` never awaits, so a broadcast never waits on a slow client; a client
    whose queue overflows (``limit`` frames or ``max_bytes`` bytes, whichever comes
    first: one signal may carry 64 KiB) is closed with 4409 and resumes on reconnect. The
    writer is either a task awaiting :meth:`next_batch` (SSE, plain ASGI) or a
    ``notify`` callback that writes synchronously (the direct path for both
    transports under ``python -m app``: no task and no event per connection).

    A client that stops reading altogether blocks its writer in the kernel's
    send buffer, so a 4409/4408 close may never be written: ``ABORT_AFTER``
    seconds after such a close, ``on_abort`` (set by the transport) lets go of
    it (no ghost stays in presence), and ``KILL_AFTER`` seconds later the
    transport's tasks are cancelled. In between, a client that reads again still
    gets its close code.
    """

    ABORT_AFTER = 5.0
    KILL_AFTER = 60.0

    __slots__ = (
        "_abort",
        "_bytes",
        "_extra",
        "_extra_bytes",
        "_pending",
        "_pending_bytes",
        "_queue",
        "_wake",
        "address",
        "admitted",
        "close_code",
        "close_reason",
        "closing",
        "identity",
        "last_seq",
        "limit",
        "max_bytes",
        "notify",
        "on_abort",
        "peer",
        "state",
        "syncing",
        "transport",
    )

    #: the default byte bound of the queue (the hub sets its own at ``admit``)
    MAX_BYTES = 4 * 1024 * 1024

    def __init__(self, identity: Identity, transport: str, limit: int) -> None:
        self.identity = identity
        self.transport = transport
        self.limit = limit
        self.max_bytes = self.MAX_BYTES
        self.state = ConnState.SYNCING
        #: ``state is CLOSING`` / ``state is SYNCING``, kept by :meth:`_move` (read on
        #: every push: plain attributes cost less than an enum comparison there)
        self.closing = False
        self.syncing = True
        self._bytes = 0  # payload bytes in ``_queue``
        self._pending_bytes = 0
        self._extra_bytes = 0
        self.address = ""  # the client's address, for the per-address cap
        self.peer = Peer(
            "p_" + os.urandom(8).hex(), identity.user_id, identity.user_name, transport
        )
        self._queue: list[Frame] = []
        self._pending: list[Frame] = []
        self._wake: asyncio.Event | None = None  # made by the first next_batch that waits
        #: called when the queue stops being empty or the connection starts closing
        self.notify: Callable[[Connection], None] | None = None
        self.close_code: int = CloseCode.NORMAL
        self.close_reason = ""
        self.last_seq = -1
        self._extra = 0  # room for the greeting beyond ``limit`` (a replay may be long)
        self._abort: asyncio.TimerHandle | None = None
        self.on_abort: Callable[[], None] | None = None
        self.admitted = False  # holds a place under the connection caps (Hub.admit)

    @property
    def peer_id(self) -> str:
        return self.peer.peer_id

    def _move(self, to: ConnState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"{self.peer_id}: {self.state.value} → {to.value}")
        self.state = to
        self.closing = to is ConnState.CLOSING
        self.syncing = to is ConnState.SYNCING

    def push(self, frame: Frame) -> None:
        if self.closing:
            return
        size = len(frame.json)
        if self.syncing:
            self._pending.append(frame)
            self._pending_bytes += size
            if len(self._pending) > self.limit or self._pending_bytes > self.max_bytes:
                self.close(CloseCode.SLOW, "slow-consumer")
            return
        if frame.seq is not None:
            if frame.seq <= self.last_seq:
                return  # already delivered by replay
            self.last_seq = frame.seq
        queue = self._queue
        if (
            len(queue) >= self.limit + self._extra
            or self._bytes + size > self.max_bytes + self._extra_bytes
        ):
            self.close(CloseCode.SLOW, "slow-consumer")
            return
        self._bytes += size
        queue.append(frame)
        if len(queue) == 1:  # a writer is idle only while the queue is empty
            self.signal()

    def signal(self) -> None:
        """Wake the writer: frames were queued, the close began, or the transport drained."""
        if self.notify is not None:
            self.notify(self)
        elif self._wake is not None:
            self._wake.set()

    def start(self, greeting: list[Frame]) -> None:
        """Queue the greeting, then what arrived while it was built, minus duplicates.

        The greeting (ready + a replay of up to ``HISTORY_LIMIT`` events) does not
        count against ``limit``: a client that missed more than a queue's worth must
        still be able to catch up. A connection already closing stays closed.
        """
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        if self.closing:
            return
        self._move(ConnState.OPEN)
        self._extra = len(greeting)
        self._extra_bytes = sum(len(frame.json) for frame in greeting)
        for frame in greeting:
            self.push(frame)
        for frame in pending:
            self.push(frame)

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close. Overflow drops the queue (the client resumes)."""
        if self.closing:
            return
        self._move(ConnState.CLOSING)
        self.close_code = code
        self.close_reason = reason
        if code == CloseCode.SLOW:
            self._queue.clear()
            self._pending.clear()
            self._bytes = self._pending_bytes = 0
        if code in (CloseCode.SLOW, CloseCode.HEARTBEAT):
            loop = asyncio.get_running_loop()
            self._abort = loop.call_later(self.ABORT_AFTER, self._run_abort)
        self.signal()

    def _run_abort(self) -> None:
        self._abort = None
        if self.on_abort is not None:
            self.on_abort()

    def finished(self) -> None:
        """The transport ended the connection itself: no abort needed."""
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
        self.on_abort = None

    def take(self) -> list[Frame]:
        """Everything queued, in order; the queue is empty afterwards."""
        batch, self._queue = self._queue, []
        self._extra = self._extra_bytes = self._bytes = 0
        return batch

    async def next_batch(self, idle: float | None = None) -> list[Frame] | None:
        """Frames to write now; None once closing and drained.

        With ``idle``, raises ``TimeoutError`` after that many seconds with nothing
        to write (``asyncio.timeout``: no task per wait, unlike ``wait_for``).
        """
        while not self._queue:
            if self.closing:
                return None
            wake = self._wake
            if wake is None:
                wake = self._wake = asyncio.Event()
            wake.clear()
            if idle is None:
                await wake.wait()
            else:
                async with asyncio.timeout(idle):
                    await wake.wait()
        return self.take()

    def queued(self) -> int:
        return len(self._queue)
