"""Generator ceiling: a raw server that pushes pre-encoded chat frames as fast as it can.

It speaks just enough WebSocket for the generator's client (handshake, ``auth``
→ ``ready``). The first ``chat`` frame starts a blast of ``--seconds``:
Lastra-shaped chat frames written one by one to every connection whose
transport is not paused. The generator counts what it can
parse per second on its one core: that is its ceiling, which must sit well
above every server's figure for the results to mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
import time

import uvloop
from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEMPLATE = (
    '{"type":"chat","seq":%d,"data":{"id":"0123456789abcdef0123456789abcdef","ts":%d,'
    '"kind":"user","userId":"u_bench0","userName":"b0","text":"|%d|%d|%s",'
    '"clientId":"c0-%d","seq":%d}}'
)
PAD = "x" * 60
CONNS: set[Blastee] = set()
STATE = {"blasting": False, "seconds": 1.5}


def frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return head + payload


class Blastee(asyncio.Protocol):
    def __init__(self) -> None:
        self.tr: asyncio.Transport | None = None
        self.buf = b""
        self.open = False
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        CONNS.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        CONNS.discard(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def data_received(self, data: bytes) -> None:
        assert self.tr is not None
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            key = b""
            for line in self.buf[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.tr.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.open = True
            self.buf = self.buf[end + 4 :]
        while len(self.buf) >= 6:
            n = self.buf[1] & 0x7F
            pos = 2
            if n == 126:
                n = int.from_bytes(self.buf[2:4], "big")
                pos = 4
            elif n == 127:
                n = int.from_bytes(self.buf[2:10], "big")
                pos = 10
            if len(self.buf) < pos + 4 + n:
                return
            mask = self.buf[pos : pos + 4]
            payload = apply_mask(self.buf[pos + 4 : pos + 4 + n], mask)
            self.buf = self.buf[pos + 4 + n :]
            if b'"type":"auth"' in payload:
                self.tr.write(frame(b'{"type":"ready","data":{"lastSeq":0}}'))
            elif b'"type":"chat"' in payload and not STATE["blasting"]:
                step = int(payload.split(b"|")[1])
                asyncio.get_running_loop().create_task(blast(step, float(STATE["seconds"])))


async def blast(step: int, seconds: float) -> None:
    """Like a broadcast server that costs nothing: one frame per connection per round.

    Each frame is written on its own (``transport.write`` per frame and
    connection), so the generator sees the same small reads as from a real
    server; a generator that falls behind gets several frames per read, as it
    would there too.
    """
    STATE["blasting"] = True
    seq = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            t = time.monotonic_ns()
            ts = int(time.time() * 1000)
            for _ in range(8):
                seq += 1
                data = frame((TEMPLATE % (seq, ts, step, t, PAD, seq, seq)).encode())
                for conn in list(CONNS):
                    if conn.open and not conn.paused and conn.tr is not None:
                        conn.tr.write(data)
            await asyncio.sleep(0)
    finally:
        STATE["blasting"] = False


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=1.5)
    opts = parser.parse_args()
    STATE["seconds"] = opts.seconds
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Blastee, opts.host, opts.port, backlog=2048)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with server:
        await stop


if __name__ == "__main__":
    uvloop.run(main())
