"""uvicorn's sans-I/O WebSocket protocol, offering direct writes (``DirectSocket``).

Private uvicorn surface: listed in :data:`app.transports.uvicorn_direct.PRIVATE_SURFACE`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from app.wire import Frame

from .flush import DIRECT, LightEvent

__all__ = ["UVICORN_STATE", "LastraWebSocketProtocol"]

#: every attribute uvicorn's protocol assigns on ``self`` (its ``__init__``, then
#: ``handle_connect``), kept in slots of ours. CPython 3.11 keeps an instance's
#: attributes inline only up to 29 of them; uvicorn sets 37, so each connection
#: would carry a full dict (about 1.6 KB) instead of 8 bytes a slot. Listed in
#: ``PRIVATE_SURFACE`` too: the canary fails if uvicorn stops assigning one.
UVICORN_STATE: Final = (
    "config",
    "app",
    "loop",
    "logger",
    "root_path",
    "asgi_version",
    "app_state",
    "connections",
    "tasks",
    "default_headers",
    "transport",
    "server",
    "client",
    "scheme",
    "queue",
    "handshake_initiated",
    "handshake_complete",
    "close_sent",
    "disconnected",
    "close_timer",
    "close_timeout",
    "initial_response",
    "conn",
    "read_paused",
    "writable",
    "ping_interval",
    "ping_timeout",
    "ping_timer",
    "pong_timer",
    "pending_ping_payload",
    "ping_sent_at",
    "last_ping_rtt",
    "frames",
    "curr_msg_data_type",
    "request",
    "response",
    "scope",
)


def _replace(obj: object, name: str, value: object) -> None:
    """Swap one of uvicorn's per-connection objects for a lighter one of ours.

    Ours is duck-typed to what uvicorn calls on it, not to the declared class, so
    it goes in through ``setattr`` rather than a typed assignment.
    """
    setattr(obj, name, value)


class _Inbox:
    """The receive queue uvicorn's protocol needs, without ``asyncio.Queue``'s weight.

    One consumer (the protocol's own ``receive``, which waits on :meth:`wait`'s
    future itself), so a list and one future do; an ``asyncio.Queue`` is three
    deques and an ``Event`` (about 3 KB) per client.
    """

    __slots__ = ("_waiter", "items")

    def __init__(self) -> None:
        self.items: list[ASGIReceiveEvent] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self.items.append(item)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self.items

    def wait(self) -> asyncio.Future[None]:
        """A future that resolves at the next :meth:`put_nowait`."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter


class LastraWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol plus synchronous pre-framed writes.

    It also keeps less per connection (a connection lives for hours): its state
    in slots (:data:`UVICORN_STATE`), a lighter receive queue and writable flag,
    and no handshake objects after the handshake.
    """

    __slots__ = (*UVICORN_STATE, "_inbox", "on_writable")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.on_writable: Callable[[], None] | None = None
        super().__init__(config, server_state, app_state, _loop)
        self._inbox = _Inbox()
        _replace(self, "queue", self._inbox)
        _replace(self, "writable", LightEvent(True))

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # the handshake went on to the app (101)
            scope["extensions"][DIRECT] = self
        _replace(self, "request", None)
        # websockets' parser generator holds the request (a local of its suspended
        # frame) for the connection's life; its headers, already copied into the
        # scope and read by nothing else, are most of its weight (about 1.8 KB)
        event.headers.clear()

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

    async def receive(self) -> ASGIReceiveEvent:
        """uvicorn's ``receive``, awaiting the inbox's future directly.

        uvicorn's awaits ``queue.get()``: two coroutines per idle client where one does.
        """
        inbox = self._inbox
        while not inbox.items:
            await inbox.wait()
        message = inbox.items.pop(0)
        if self.read_paused and not inbox.items:
            self.read_paused = False
            self.transport.resume_reading()
        return message

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
