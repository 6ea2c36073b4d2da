"""Direct WebSocket writes under uvicorn: frame once, write N times, no task per client.

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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

__all__ = ["DIRECT", "LastraWebSocketProtocol"]

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
        """Drop the TCP connection (a client that stopped reading)."""
        self.transport.abort()
