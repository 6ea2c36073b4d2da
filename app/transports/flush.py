"""Direct writes: frame once, write N times, no task per client.

The ASGI ``websocket.send`` path costs, per recipient and per message, a str →
bytes encode, a frame build and a ``transport.write``, behind an awaited
``send`` (so one writer task per connection). A chat broadcast sends the same
bytes to everyone, and server frames are unmasked, so the frame can be built
once and handed to every transport as it is.

This module is ours and knows no server: a server's protocol that can take
pre-framed bytes synchronously offers itself in the ASGI scope under
``extensions[DIRECT]``, shaped as :class:`DirectSocket` (a WebSocket) or
:class:`DirectStream` (a streaming HTTP response, the SSE stream). The one
implementation is uvicorn's (:mod:`app.transports.uvicorn_direct`, which
``python -m app`` installs when the uvicorn version is one it was tested on).
Under any other server the extension is absent and the adapters fall back to
plain ASGI sends; nothing else changes.

:class:`Flusher` drives both shapes: once per event-loop pass it writes every
connection that has frames queued, all of its frames in one ``writelines``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from app.hub import Connection
from app.metrics import Metrics
from app.wire import SSE_KEEPALIVE, Frame

__all__ = [
    "DIRECT",
    "DirectLink",
    "DirectSocket",
    "DirectStream",
    "Flusher",
    "LightEvent",
    "offered",
]

#: the ASGI scope extension under which a server's protocol offers direct writes
DIRECT = "lastra.direct"


class DirectLink(Protocol):
    """What the flusher needs of a connection it writes to."""

    #: set by the flusher: called when a paused transport has drained
    on_writable: Callable[[], None] | None

    @property
    def can_write(self) -> bool:
        """Open, and the transport's buffer below its high-water mark."""

    def write(self, batch: list[Frame]) -> bool:
        """Write the frames in one go; False if the connection is gone."""

    def end(self, code: int, reason: str) -> None:
        """Say goodbye with ``code`` (the WebSocket close, the stream's closing lines)."""

    def abort(self) -> None:
        """Drop the TCP connection (a client that stopped reading), unless it is gone."""


class DirectSocket(DirectLink, Protocol):
    """A WebSocket that takes pre-framed bytes."""

    @property
    def open(self) -> bool:
        """Handshake done and no close sent or received."""

    @property
    def gone(self) -> bool:
        """The peer's TCP connection is lost."""

    def unsent(self) -> int:
        """Bytes still in the transport's write buffer."""

    def close_now(self, code: int, reason: str) -> None:
        """Start the closing handshake without awaiting (``receive()`` gets the disconnect)."""


class DirectStream(DirectLink, Protocol):
    """A streaming HTTP response whose chunks are written straight to the socket."""

    #: since the last keep-alive tick (cleared by the flusher)
    written: bool

    @property
    def open(self) -> bool:
        """Headers sent, and neither the body finished nor the client gone."""

    def write_raw(self, parts: list[bytes]) -> bool:
        """Write ``parts`` as one chunk of the body."""

    def bind(self) -> asyncio.Future[None]:
        """Take over the connection's hooks; the future resolves at the end or on loss."""

    def release(self) -> None:
        """Give the hooks back (the stream is over)."""


def offered(scope: Any) -> object | None:
    """The direct writer a server's protocol put in this scope, if any.

    Only the protocol classes of :mod:`app.transports.uvicorn_direct` set this
    key, so the caller may take the object as the shape its scope type implies.
    """
    extensions = scope.get("extensions") or {}
    link: object | None = extensions.get(DIRECT)
    return link


class Flusher:
    """Writes queued frames straight to the transports, once per loop pass.

    ``wake`` is each direct connection's ``notify``: the first frame queued (or a
    close) marks the connection, and one ``call_soon`` writes every marked one:
    all its frames in one ``writelines``. A transport above its high-water mark
    is skipped; its protocol wakes the connection again when it drains, and
    until then frames wait in the connection's bounded queue (overflow: 4409).
    SSE streams with nothing to say get a keep-alive comment within
    ``keepalive`` seconds from one timer, not from a task per stream.
    """

    def __init__(self, metrics: Metrics, keepalive: float) -> None:
        self.links: dict[Connection, DirectLink] = {}
        self._dirty: list[Connection] = []
        self._scheduled = False
        self._counts = metrics.messages_out
        self._latency = {t: metrics.latency.labels(t) for t in ("ws", "sse")}
        self._keepalive = keepalive
        self._streams: dict[Connection, DirectStream] = {}
        self._ticker: asyncio.TimerHandle | None = None
        #: one bound method for every connection (``self.wake`` makes a new one per read)
        self._wake: Callable[[Connection], None] = self.wake

    def link(self, conn: Connection, link: DirectLink) -> None:
        """Write ``conn``'s frames to ``link`` from now on."""
        self.links[conn] = link
        conn.notify = self._wake
        link.on_writable = conn.signal  # a bound method: no closure per connection

    def link_stream(self, conn: Connection, link: DirectStream) -> None:
        """Like :meth:`link`, and keep the stream alive with comments while it is idle."""
        self.link(conn, link)
        self._streams[conn] = link
        if self._ticker is None:
            loop = asyncio.get_running_loop()
            self._ticker = loop.call_later(self._keepalive / 2, self._tick)

    def unlink(self, conn: Connection) -> None:
        link = self.links.pop(conn, None)
        self._streams.pop(conn, None)
        conn.notify = None
        if link is not None:
            link.on_writable = None

    def wake(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        self._scheduled = False
        counts = self._counts
        oldest: dict[str, float] = {}  # per transport: one latency observation per pass
        for conn in dirty:
            link = self.links.get(conn)
            if link is None:
                continue
            if conn.queued() and link.can_write:
                batch = conn.take()
                if link.write(batch):
                    transport = conn.transport
                    for frame in batch:
                        counts[(frame.type, transport)] += 1
                    born = batch[0].born
                    if born < oldest.get(transport, born + 1):
                        oldest[transport] = born
            if conn.closing and not conn.queued():
                link.end(conn.close_code, conn.close_reason)
        if oldest:
            now = time.monotonic()
            for transport, born in oldest.items():
                self._latency[transport].observe(now - born)

    def _tick(self) -> None:
        """A keep-alive comment on every stream that wrote nothing since the last tick.

        Ticks come every half interval, so a stream is silent for at most
        ``keepalive`` seconds, as with a per-stream timer (and at least half that).
        """
        self._ticker = None
        for conn, link in list(self._streams.items()):
            if link.written:
                link.written = False
            elif not conn.queued() and link.can_write:
                link.write_raw([SSE_KEEPALIVE])  # counts as written: the next is K s later
        if self._streams:
            loop = asyncio.get_running_loop()
            self._ticker = loop.call_later(self._keepalive / 2, self._tick)


class LightEvent:
    """``asyncio.Event``'s ``set``/``clear``/``is_set``/``wait``, without its deque.

    An ``asyncio.Event`` makes a deque up front (about 700 bytes); uvicorn keeps two
    per request (the cycle's ``message_event``, the flow control's writable event)
    and one per WebSocket (its writable flag), which a connection holds for hours.
    Waiters are rare here, so a list made on the first wait does.
    """

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True
