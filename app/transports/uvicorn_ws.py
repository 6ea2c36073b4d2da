"""uvicorn's sans-I/O WebSocket protocol, offering direct writes (``DirectSocket``).

Private uvicorn surface: listed in :data:`app.transports.uvicorn_direct.PRIVATE_SURFACE`.
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

from app.wire import Frame

from .flush import DIRECT

__all__ = ["LastraWebSocketProtocol"]


def _replace(obj: object, name: str, value: object) -> None:
    """Swap one of uvicorn's per-connection objects for a lighter one of ours.

    Ours is duck-typed to what uvicorn calls on it, not to the declared class, so
    it goes in through ``setattr`` rather than a typed assignment.
    """
    setattr(obj, name, value)


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
        _replace(self, "queue", _Inbox())
        _replace(self, "writable", _Flag())

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # the handshake went on to the app (101)
            scope["extensions"][DIRECT] = self
        _replace(self, "request", None)  # its headers live on in the scope

    def send_receive_event_to_app(self) -> None:
        """A text message that is not UTF-8 closes 1007 quietly.

        uvicorn closes 1007 too, but logs an ERROR with a traceback first: one
        bad frame per connection would be a log storm anyone can start.
        """
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self.conn.send_close(1007, "invalid-utf8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if self.handshake_complete:
            _replace(self, "response", None)  # only the accept used it

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

    @property
    def gone(self) -> bool:
        return self.disconnected

    def unsent(self) -> int:
        return self.transport.get_write_buffer_size()

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
