"""uvicorn's httptools protocol, with our header limits and direct writes for streams.

Private uvicorn surface: listed in :data:`app.transports.uvicorn_direct.PRIVATE_SURFACE`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.wire import Frame, sse_closed

from .flush import DIRECT, LightEvent

__all__ = ["UVICORN_HTTP_STATE", "HttpLimits", "HttpLink", "LastraHttpProtocol"]


class _Pipeline(list[Any]):
    """uvicorn's queue of pipelined requests (``appendleft``, ``pop``), without a deque."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


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
        """Take over the connection's hooks; the future resolves at the end or on loss.

        The stream then lives for hours, so uvicorn's per-request objects that a
        deque makes heavy are swapped for light ones of the same state. Nothing
        waits on them now: the handler is here, not in ``receive`` or a drain.
        """
        self.ended = asyncio.get_running_loop().create_future()
        proto, cycle = self.proto, self.cycle
        proto.link = self
        cycle.message_event = cast(asyncio.Event, LightEvent(cycle.message_event.is_set()))
        flow: Any = cycle.flow
        flow._is_writable_event = LightEvent(flow._is_writable_event.is_set())
        if not proto.pipeline:
            proto.pipeline = cast(Any, _Pipeline())
        if cycle.disconnected:
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
            size = sum(map(len, parts))
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


#: every attribute uvicorn's ``HttpToolsProtocol`` assigns on ``self``, kept in slots
#: of ours. CPython 3.11 keeps an instance's attributes inline only up to 29 of
#: them; uvicorn sets 28 and ours 7 more, so each connection (an SSE stream holds
#: one for hours) would carry a full dict, about 1.5 KB, instead of 8 bytes a slot.
#: An attribute a later uvicorn adds still works (in a dict again): the canary test
#: ``tests/test_uvicorn_http_state.py`` names it.
UVICORN_HTTP_STATE: Final = (
    "access_log",
    "access_logger",
    "app",
    "app_state",
    "asgi_version",
    "client",
    "config",
    "connections",
    "cycle",
    "expect_100_continue",
    "flow",
    "headers",
    "limit_concurrency",
    "logger",
    "loop",
    "parser",
    "pipeline",
    "root_path",
    "scheme",
    "scope",
    "server",
    "server_state",
    "tasks",
    "timeout_keep_alive",
    "timeout_keep_alive_task",
    "transport",
    "url",
    "ws_protocol_class",
)

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

    The body's timer is armed once per read that leaves a body unfinished, not
    per parser callback: a request whose body (or lack of one) came with its
    head, as nearly every GET and POST does, never arms it.
    """

    __slots__ = (
        *UVICORN_HTTP_STATE,
        "link",
        "_head",
        "_fields",
        "_in_head",
        "_in_body",
        "_refused",
        "_timer",
    )

    limits: ClassVar[HttpLimits] = HttpLimits()
    link: HttpLink | None  # the stream currently written directly, if any
    _head: int  # bytes of the current request head received so far
    _fields: int  # header fields of the current request
    _in_head: bool  # the next bytes belong to a request head
    _in_body: bool  # a head is complete, its body (if any) is not
    _refused: bool
    _timer: asyncio.TimerHandle | None

    @classmethod
    def with_limits(cls, limits: HttpLimits) -> type[LastraHttpProtocol]:
        """This protocol with other limits (uvicorn instantiates the class itself)."""
        return type(cls.__name__, (cls,), {"limits": limits, "__slots__": ()})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # ours first: nothing of the protocol runs before connection_made
        self.link, self._timer = None, None
        self._head, self._fields, self._in_head, self._in_body = 0, 0, True, False
        self._refused = False
        # asyncio's signature (uvicorn narrows it with a type: ignore of its own)
        super().connection_made(cast(asyncio.Transport, transport))
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
        if self._in_body and not self._refused and not self.transport.is_closing():
            self._arm(self.limits.body_timeout)  # the silence inside a body starts now

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
        self._disarm()
        # an upgrade: the WebSocket protocol takes the connection over, untimed
        self._in_body = not self.parser.should_upgrade()
        super().on_headers_complete()
        cycle = self.cycle
        scope: Any = self.scope
        if cycle is not None and cycle.scope is scope and scope.get("method") == "GET":
            extensions: dict[str, Any] = scope.setdefault("extensions", {})
            extensions[DIRECT] = HttpLink(self, cycle)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._in_head, self._in_body = True, False
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
