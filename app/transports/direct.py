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

from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

__all__ = ["DIRECT", "LastraWebSocketProtocol"]

#: the ASGI scope extension under which the protocol offers itself
DIRECT = "lastra.direct"


class LastraWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol plus synchronous pre-framed writes."""

    on_writable: Callable[[], None] | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:  # the handshake went on to the app (101)
            scope["extensions"][DIRECT] = self
        self.request = None  # type: ignore[assignment]  # its headers live on in the scope

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
