"""Bytes on the wire: JSON with orjson, WebSocket text and SSE frames.

An event is encoded once per broadcast into a :class:`Frame`; each transport
takes the form it needs from that one object, so a broadcast to N clients costs
one encode, not N.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from app.core import Event

__all__ = [
    "SSE_KEEPALIVE",
    "SSE_RETRY",
    "Frame",
    "compact",
    "decode",
    "encode_event",
    "frame_from_record",
    "sse_closed",
    "ws_head",
]

#: the first bytes of every event stream: EventSource waits 2 s before reconnecting
SSE_RETRY = b"retry: 2000\n\n"
#: the comment an idle event stream gets (proxies must not time it out)
SSE_KEEPALIVE = b": keep-alive\n\n"


def sse_closed(code: int, reason: str) -> bytes:
    """The end of an event stream: why (a restart, a slow consumer), and come back in 1 s."""
    return f": closed {code} {reason}\nretry: 1000\n\n".encode()


#: RFC 6455 header of an unmasked, final text frame, by payload length (< 126)
_SHORT_HEADS = [bytes((0x81, n)) for n in range(126)]


def ws_head(length: int) -> bytes:
    """The header of a server-to-client text frame carrying ``length`` bytes.

    Server frames are unmasked, so header + payload is the same for every
    recipient: a broadcast frames once and writes the same two buffers N times.
    """
    if length < 126:
        return _SHORT_HEADS[length]
    if length < 65536:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


def compact(data: bytes) -> bytes:
    """A right-sized copy of ``orjson.dumps`` output, for bytes that are kept.

    orjson hands back its whole 4 KiB (or larger) working buffer; a cache of
    many short encodings (presence entries, stored events) would pay that per
    item. Transient frames do not need this.
    """
    return memoryview(data).tobytes() if len(data) < 2048 else data


class Frame:
    """One encoded server event, shared by every recipient."""

    __slots__ = ("_epoch", "_sse", "_text", "_ws_head", "born", "json", "seq", "type")

    def __init__(self, type_: str, json: bytes, seq: int | None, epoch: str | None) -> None:
        self.type = type_
        self.json = json
        self.seq = seq
        self.born = time.monotonic()  # for the delivery-latency histogram
        self._text: str | None = None
        self._sse: bytes | None = None
        self._ws_head: bytes | None = None
        self._epoch = epoch

    @property
    def ws_head(self) -> bytes:
        """The WebSocket frame header for :attr:`json` (computed once per broadcast)."""
        if self._ws_head is None:
            self._ws_head = ws_head(len(self.json))
        return self._ws_head

    @property
    def text(self) -> str:
        """The WebSocket text frame (decoded once, then cached)."""
        if self._text is None:
            self._text = self.json.decode()
        return self._text

    @property
    def sse(self) -> bytes:
        """The SSE frame (built once, on first use: WebSocket-only rooms never pay)."""
        if self._sse is None:
            seq, epoch = self.seq, self._epoch
            sse_id = f"id: {epoch}:{seq}\n".encode() if seq is not None and epoch else b""
            head = b"event: " + self.type.encode() + b"\n" + sse_id + b"data: "
            self._sse = head + self.json + b"\n\n"
        return self._sse


def encode_event(event: Event, epoch: str | None = None) -> Frame:
    return Frame(event.type, orjson.dumps(event.envelope()), event.seq, epoch)


def frame_from_record(type_: str, seq: int, data: bytes, epoch: str) -> Frame:
    """A durable event's frame built from the stored data bytes (no re-encoding)."""
    json = (
        b'{"type":"' + type_.encode() + b'","seq":' + str(seq).encode() + b',"data":' + data + b"}"
    )
    return Frame(type_, json, seq, epoch)


def history_frame(datas: list[bytes]) -> Frame:
    json = b'{"type":"history","data":{"messages":[' + b",".join(datas) + b"]}}"
    return Frame("history", json, None, None)


def decode(raw: str | bytes) -> Any:
    """Parse one JSON document; raises ``orjson.JSONDecodeError`` (a ValueError)."""
    return orjson.loads(raw)
