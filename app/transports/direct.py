"""Direct writes under uvicorn: frame once, write N times, no task per client.

The ASGI ``websocket.send`` path costs, per recipient and per message, a str →
bytes encode, a websockets frame build and a ``transport.write``, behind an
awaited ``send`` (so one writer task per connection). A chat broadcast sends the
same bytes to everyone, and server frames are unmasked, so the frame can be
built once and handed to every transport as it is.

:class:`LastraWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol with
one addition: it puts itself in the ASGI scope under ``extensions["lastra.direct"]``.
The WebSocket adapter then writes pre-framed bytes with :meth:`write_frames`,
learns when a paused transport drains through ``on_writable``, and closes with
:meth:`close_now`, all synchronously. Under any other server (or another
uvicorn WebSocket implementation) the extension is absent and the adapter falls
back to plain ASGI sends; nothing else changes.

:class:`LastraHttpProtocol` does the same for the SSE stream: uvicorn's httptools
protocol, offering an :class:`HttpLink` under the same extension key on ``GET``
requests, through which the stream writes its chunks straight to the transport.

:class:`Flusher` drives both: once per event-loop pass it writes every
connection that has frames queued, all of them in one ``writelines``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from app.hub import Connection
from app.metrics import Metrics

from .codec import SSE_KEEPALIVE, Frame, sse_closed

__all__ = ["DIRECT", "Flusher", "HttpLink", "LastraHttpProtocol", "LastraWebSocketProtocol"]

#: the ASGI scope extension under which the protocol offers itself
DIRECT = "lastra.direct"


class _Inbox:
    """The receive queue uvicorn's protocol needs, without ``asyncio.Queue``'s weight.

    One consumer (the app's ``receive``), so a list and one future do; an
    ``asyncio.Queue`` is three deques and an ``Event`` (about 3 KB) per client.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ASGIReceiveEvent] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """``asyncio.Event`` for the writable flag, with no deque until someone waits."""

    __slots__ = ("_on", "_waiters")

    def __init__(self) -> None:
        self._on = True
        self._waiters: list[asyncio.Future[bool]] = []

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._on = False

    async def wait(self) -> bool:
        if self._on:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter
        return True


class LastraWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol plus synchronous pre-framed writes.

    It also keeps less per connection (a connection lives for hours): a lighter
    receive queue and writable flag, and no handshake objects after the handshake.
    """

    on_writable: Callable[[], None] | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # the handshake went on to the app (101)
            scope["extensions"][DIRECT] = self
        self.request = None  # type: ignore[assignment]  # its headers live on in the scope

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete:
            self.response = None  # type: ignore[assignment]  # only the accept used it

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.on_writable is not None:
            self.on_writable()

    @property
    def can_write(self) -> bool:
        """Open, and the transport's buffer below its high-water mark."""
        return self.writable.is_set() and self.open

    @property
    def open(self) -> bool:
        return self.handshake_complete and not (self.close_sent or self.disconnected)

    def write_frames(self, parts: list[bytes]) -> bool:
        """Write complete frames (header, payload, header, payload, …) in one go."""
        if not self.open or self.transport.is_closing():
            return False
        self.transport.writelines(parts)
        return True

    def write(self, batch: list[Frame]) -> bool:
        parts: list[bytes] = []
        for frame in batch:
            parts += (frame.ws_head, frame.json)
        return self.write_frames(parts)

    def end(self, code: int, reason: str) -> None:
        self.close_now(code, reason)

    def close_now(self, code: int, reason: str) -> None:
        """Start the closing handshake, as ASGI ``websocket.close`` would, without awaiting.

        The app's pending ``receive()`` gets ``websocket.disconnect`` with ``code``.
        """
        if not self.open or self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)

    def abort(self) -> None:
        """Drop the TCP connection (a client that stopped reading), unless it is gone."""
        if not self.disconnected:
            self.transport.abort()


class HttpLink:
    """One streaming HTTP response (the SSE stream), written to directly.

    Only for use after ``http.response.start`` went through ASGI (so uvicorn
    chose the framing) and until :attr:`ended` resolves; the handler then sends
    the final ``http.response.body`` itself.
    """

    __slots__ = ("cycle", "ended", "on_writable", "proto", "written")

    def __init__(self, proto: LastraHttpProtocol, cycle: RequestResponseCycle) -> None:
        self.proto = proto
        self.cycle = cycle
        self.on_writable: Callable[[], None] | None = None
        self.ended: asyncio.Future[None] | None = None
        self.written = False  # since the last keep-alive tick

    def bind(self) -> asyncio.Future[None]:
        """Take over the connection's hooks; the future resolves at the end or on loss."""
        self.ended = asyncio.get_running_loop().create_future()
        self.proto.link = self
        if self.cycle.disconnected:
            self._finish()
        return self.ended

    def release(self) -> None:
        if self.proto.link is self:
            self.proto.link = None
        self.on_writable = None

    @property
    def open(self) -> bool:
        cycle = self.cycle
        return cycle.response_started and not (cycle.response_complete or cycle.disconnected)

    @property
    def can_write(self) -> bool:
        return self.open and not self.cycle.flow.write_paused

    def write_raw(self, parts: list[bytes]) -> bool:
        if not self.open or self.proto.transport.is_closing():
            return False
        self.written = True
        if self.cycle.chunked_encoding:
            size = sum(len(part) for part in parts)
            self.proto.transport.writelines([b"%x\r\n" % size, *parts, b"\r\n"])
        else:
            self.proto.transport.writelines(parts)
        return True

    def write(self, batch: list[Frame]) -> bool:
        return self.write_raw([frame.sse for frame in batch])

    def end(self, code: int, reason: str) -> None:
        """Tell EventSource when to come back (a restart, a slow consumer), then finish."""
        self.write_raw([sse_closed(code, reason)])
        self._finish()

    def abort(self) -> None:
        if not self.cycle.disconnected:
            self.proto.transport.abort()

    def _finish(self) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(None)


class LastraHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, offering an :class:`HttpLink` to ``GET`` handlers."""

    link: HttpLink | None = None  # the stream currently written directly, if any

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        scope: Any = self.scope
        if cycle is not None and cycle.scope is scope and scope.get("method") == "GET":
            extensions: dict[str, Any] = scope.setdefault("extensions", {})
            extensions[DIRECT] = HttpLink(self, cycle)

    def resume_writing(self) -> None:
        super().resume_writing()
        link = self.link
        if link is not None and link.on_writable is not None:
            link.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        link = self.link
        if link is not None:
            link._finish()


Link = LastraWebSocketProtocol | HttpLink


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
        self.links: dict[Connection, Link] = {}
        self._dirty: list[Connection] = []
        self._scheduled = False
        self._counts = metrics.messages_out
        self._latency = {t: metrics.latency.labels(t) for t in ("ws", "sse")}
        self._keepalive = keepalive
        self._streams: dict[Connection, HttpLink] = {}
        self._ticker: asyncio.TimerHandle | None = None

    def link(self, conn: Connection, link: Link) -> None:
        self.links[conn] = link
        conn.notify = self.wake
        link.on_writable = lambda: self.wake(conn)
        if isinstance(link, HttpLink):
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
