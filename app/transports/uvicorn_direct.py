"""uvicorn's protocols, offering direct writes (:mod:`app.transports.flush`).

Everything here depends on uvicorn's private classes and attributes, so it is
kept apart from the rest: nothing else in ``app`` imports uvicorn's internals,
and ``python -m app`` installs these protocols only for the uvicorn minors in
:data:`TESTED_MINORS` (otherwise it serves through uvicorn's stock protocols and
the adapters use plain ASGI sends). :data:`PRIVATE_SURFACE` names every private
class, method and attribute touched here; ``tests/test_uvicorn_canary.py`` checks
each against the installed uvicorn and fails loudly when one moved.

:class:`LastraWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol that
puts itself in the ASGI scope under ``extensions[DIRECT]``, shaped as
:class:`~app.transports.flush.DirectSocket`. :class:`LastraHttpProtocol` does
the same for ``GET`` requests with an :class:`HttpLink`
(:class:`~app.transports.flush.DirectStream`), through which the SSE stream
writes its chunks straight to the transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from app.wire import Frame, sse_closed

from .flush import DIRECT

__all__ = [
    "PRIVATE_SURFACE",
    "TESTED_MINORS",
    "HttpLimits",
    "HttpLink",
    "LastraHttpProtocol",
    "LastraWebSocketProtocol",
]

#: uvicorn minors this module was tested on (pyproject.toml's range says the same)
TESTED_MINORS: Final = ("0.55",)

#: every private piece of uvicorn used here: (module, class, {name: shape}), where a
#: shape is a method's parameter list (a method called or overridden) or "attr"
#: (an instance attribute read or written)
PRIVATE_SURFACE: Final[tuple[tuple[str, str, dict[str, str]], ...]] = (
    (
        "uvicorn.protocols.websockets.websockets_sansio_impl",
        "WebSocketsSansIOProtocol",
        {
            "__init__": "(self, config, server_state, app_state, _loop)",
            "handle_connect": "(self, event)",
            "send_receive_event_to_app": "(self)",
            "handle_parser_exception": "(self)",
            "send": "(self, message)",
            "resume_writing": "(self)",
            "queue": "attr",
            "writable": "attr",
            "scope": "attr",
            "request": "attr",
            "response": "attr",
            "handshake_complete": "attr",
            "close_sent": "attr",
            "disconnected": "attr",
            "transport": "attr",
            "conn": "attr",
            "frames": "attr",
            "curr_msg_data_type": "attr",
            "read_paused": "attr",
            "loop": "attr",
            "close_timer": "attr",
            "close_timeout": "attr",
        },
    ),
    (
        "uvicorn.protocols.http.httptools_impl",
        "HttpToolsProtocol",
        {
            "connection_made": "(self, transport)",
            "data_received": "(self, data)",
            "on_header": "(self, name, value)",
            "on_headers_complete": "(self)",
            "on_body": "(self, body)",
            "on_message_complete": "(self)",
            "on_response_complete": "(self)",
            "resume_writing": "(self)",
            "connection_lost": "(self, exc)",
            "cycle": "attr",
            "scope": "attr",
            "transport": "attr",
            "parser": "attr",
            "loop": "attr",
        },
    ),
    (
        "uvicorn.protocols.http.httptools_impl",
        "RequestResponseCycle",
        {
            "scope": "attr",
            "disconnected": "attr",
            "response_started": "attr",
            "response_complete": "attr",
            "chunked_encoding": "attr",
            "flow": "attr",
        },
    ),
    ("uvicorn.protocols.http.flow_control", "FlowControl", {"write_paused": "attr"}),
)


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
        """Tell EventSource when to come back (a restart, a slow consumer), then finish.

        Once: the flusher may meet a closing connection twice in one pass (a frame
        and the close both woke it), and the closing line must not be written twice.
        """
        if self.ended is not None and self.ended.done():
            return
        self.write_raw([sse_closed(code, reason)])
        self._finish()

    def abort(self) -> None:
        if not self.cycle.disconnected:
            self.proto.transport.abort()

    def _finish(self) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(None)


class HttpLimits(NamedTuple):
    """What a request may cost before the app sees it (``LASTRA_MAX_HEADER_BYTES`` …)."""

    max_header_bytes: int = 32768  # request line and headers together
    max_headers: int = 100
    header_timeout: float = 10.0  # from the connection (or the last response) to the headers
    body_timeout: float = 30.0  # the longest silence inside a request body


_REFUSALS: Final = {
    408: b"HTTP/1.1 408 Request Timeout\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
}


class LastraHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, offering an :class:`HttpLink` to ``GET`` handlers.

    It also enforces :class:`HttpLimits`, which httptools and uvicorn do not: a head
    over ``max_header_bytes`` or with more than ``max_headers`` fields gets 431 (the
    bytes are counted before httptools buffers them), a head not complete within
    ``header_timeout`` or a body silent for ``body_timeout`` gets 408; each then
    closes the connection. An SSE stream or a WebSocket is not timed: a GET has
    no body, and an upgrade leaves this protocol.
    """

    link: HttpLink | None = None  # the stream currently written directly, if any
    limits: ClassVar[HttpLimits] = HttpLimits()
    _head = 0  # bytes of the current request head received so far
    _fields = 0  # header fields of the current request
    _in_head = True  # the next bytes belong to a request head
    _refused = False
    _timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_limits(cls, limits: HttpLimits) -> type[LastraHttpProtocol]:
        """This protocol with other limits (uvicorn instantiates the class itself)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            room = self.limits.max_header_bytes - self._head
            if len(data) > room and data.find(b"\r\n\r\n", 0, max(room, 0) + 4) < 0:
                self._refuse(431)
                return
            self._head += len(data)
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._fields += 1
        if self._fields > self.limits.max_headers:
            self._refuse(431)
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head, self._head, self._fields = False, 0, 0
        if self.parser.should_upgrade():
            self._disarm()  # the WebSocket protocol takes the connection over
        else:
            self._arm(self.limits.body_timeout)  # until on_message_complete
        super().on_headers_complete()
        cycle = self.cycle
        scope: Any = self.scope
        if cycle is not None and cycle.scope is scope and scope.get("method") == "GET":
            extensions: dict[str, Any] = scope.setdefault("extensions", {})
            extensions[DIRECT] = HttpLink(self, cycle)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._arm(self.limits.body_timeout)
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and not self.transport.is_closing():
            self._arm(self.limits.header_timeout)  # the next request's head

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        """A head or a body that stopped arriving: 408 (if no response started), close."""
        self._timer = None
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self._refuse(408)
        else:
            self._refused = True
            self.transport.close()

    def _refuse(self, status: int) -> None:
        self._refused = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(
                _REFUSALS[status] + b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def resume_writing(self) -> None:
        super().resume_writing()
        link = self.link
        if link is not None and link.on_writable is not None:
            link.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
        link = self.link
        if link is not None:
            link._finish()
