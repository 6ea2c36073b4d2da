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

__all__ = ["Frame", "decode", "encode_event", "frame_from_record"]


class Frame:
    """One encoded server event, shared by every recipient."""

    __slots__ = ("_epoch", "_sse", "_text", "born", "json", "seq", "type")

    def __init__(self, type_: str, json: bytes, seq: int | None, epoch: str | None) -> None:
        self.type = type_
        self.json = json
        self.seq = seq
        self.born = time.monotonic()  # for the delivery-latency histogram
        self._text: str | None = None
        self._sse: bytes | None = None
        self._epoch = epoch

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
