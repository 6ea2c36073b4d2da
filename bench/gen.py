"""Load generator worker: one process, one uvloop event loop, many raw clients.

The coordinator (:mod:`bench.run`) starts one or more of these pinned to the
generator CPU and drives them over a pipe with small commands (connect, step,
collect, stall, check, close). Everything is bounded: every wait has a timeout,
and a worker kills itself (``SIGALRM``) after ``max_life`` seconds or when the
pipe closes.

The clients are hand-written ``asyncio.Protocol`` s rather than library clients
because a receiver must cost ~1 µs per delivered message for one core to absorb
the fan-out of the fastest server (several 100k deliveries/s); the ``websockets``
client costs an order of magnitude more. They speak:

* ``ws``  — RFC 6455 (masked client frames, no extensions) with Lastra's
  envelope: first frame ``auth``, connected at ``ready``;
* ``sio`` — Engine.IO 4 / Socket.IO 5 over a direct WebSocket (``0{..}`` →
  ``40{auth}`` → ``40{sid}``; ``2`` answered with ``3``);
* ``sse`` — HTTP/1.1 ``text/event-stream`` (chunked), chat sent by ``POST`` on
  keep-alive connections (:class:`Poster`).

Every chat message the bench sends carries ``|<step>|<monotonic ns>|`` in its
text; a receiver finds it with three ``bytes.find`` calls and records the
end-to-end latency (``CLOCK_MONOTONIC`` is system-wide, so sender and receiver
may be different processes). Durable frames (``{"type":"chat","seq":N``) are
checked for order: a gap is a lost message, a repeat a duplicate.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import functools
import hashlib
import itertools
import os
import random
import re
import signal
import socket
import time
import traceback
import uuid
from collections import Counter, deque
from multiprocessing.connection import Connection as Pipe
from typing import Any

import orjson
from websockets.speedups import apply_mask

now_ns = time.monotonic_ns
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_getrandbits = random.getrandbits


class Client(asyncio.Protocol):
    """What every receiving client shares: the hot path for a delivered message."""

    def __init__(self, w: Worker, idx: int, token: str, staller: bool, port: int = 0) -> None:
        self.w = w
        self.idx = idx
        self.port = port or w.port
        self.host_header = b"127.0.0.1:%d" % self.port
        self.token = token
        self.staller = staller
        self.record = not staller
        self.tr: asyncio.Transport | None = None
        self.ready: asyncio.Future[int] = w.loop.create_future()
        self.last: int | None = None
        self.gaps = 0
        self.dups = 0
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.handshaken = False
        self.head = b""
        self.epoch: str | None = None  # from ready: sent back with lastSeq to resume
        self.recovered: bool | None = None
        self.resume = False  # send lastSeq and epoch in auth (a storm's reconnect)
        self.users: set[str] | None = None  # the storm's observer: its presence list
        self.slot = -1  # its place in Worker.clients (storm: the rejoined client takes it)
        #: the server's count of users online, in a large room (its list is then partial, §8)
        self.online: int | None = None

    # -- transport callbacks shared by all kinds --------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before ready ({exc})"))
        elif self.w.storm is not None and not self.ready.cancelled() and not self.ready.exception():
            # only a client that reached ready is lost: a failed storm attempt (timed out,
            # refused at the handshake) is its rejoin's business, not a second rejoin
            self.w.storm.lost(self)

    def opened(self) -> None:
        raise NotImplementedError

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.tr is not None:
            self.tr.abort()

    # -- the hot path -------------------------------------------------------------

    def on_msg(self, buf: bytes, s: int, e: int, now: int) -> None:
        w = self.w
        if buf.startswith(w.seq_prefix, s):
            p = s + w.seq_plen
            q = buf.find(b",", p, e)
            seq = int(buf[p:q])
            last = self.last
            if last is None or seq == last + 1:
                self.last = seq
            elif seq <= last:
                self.dups += 1
            else:
                self.gaps += seq - last - 1
                self.last = seq
            i = buf.find(b"|", q, e)
            if i >= 0 and self.record:
                j = buf.find(b"|", i + 1, e)
                k = buf.find(b"|", j + 1, e)
                step = int(buf[i + 1 : j])
                arr = w.lat.get(step)
                if arr is None:
                    arr = w.new_step(step, now)
                arr.append((now - int(buf[j + 1 : k])) // 1000)
            return
        self.on_other(buf, s, e, now)

    def on_other(self, buf: bytes, s: int, e: int, now: int) -> None:
        """Lastra's (and the JSON baselines') non-chat frames."""
        w = self.w
        if buf.startswith(b'{"type":"ack"', s):
            w.acks += 1
        elif buf.startswith(b'{"type":"ready"', s):
            data = orjson.loads(buf[s:e]).get("data") or {}
            self.epoch = data.get("epoch")
            self.recovered = data.get("recovered")
            # resumed: the replay follows, so our own lastSeq stays the reference
            if w.strict and isinstance(data.get("lastSeq"), int) and not self.recovered:
                self.last = data["lastSeq"]
            if not self.ready.done():
                self.ready.set_result(now)
        elif self.users is not None and buf.startswith(b'{"type":"presence', s):
            data = orjson.loads(buf[s:e]).get("data") or {}
            if "users" in data:
                self.users = {u["userId"] for u in data["users"]}
            for u in data.get("upsert") or ():
                self.users.add(u["userId"])
            self.users.difference_update(data.get("remove") or ())
            if "online" in data:
                self.online = data["online"]
            elif "users" in data:  # a whole snapshot: the list counts itself
                self.online = None
            if w.storm is not None:
                w.storm.presence(self, now)
        elif buf.startswith(b'{"type":"history"', s):
            if w.strict:
                msgs = (orjson.loads(buf[s:e]).get("data") or {}).get("messages") or []
                seqs = [m["seq"] for m in msgs if isinstance(m.get("seq"), int)]
                if seqs and (self.last is None or max(seqs) > self.last):
                    self.last = max(seqs)
        elif buf.startswith(b'{"type":"error"', s):
            data = orjson.loads(buf[s:e]).get("data") or {}
            w.errors[str(data.get("code"))] += 1
        else:
            w.other += 1


class WSClient(Client):
    """RFC 6455 client; ``w.sio`` switches the payload to Engine.IO/Socket.IO."""

    def __init__(self, w: Worker, idx: int, token: str, staller: bool, port: int = 0) -> None:
        super().__init__(w, idx, token, staller, port)
        self.buf = b""
        self.big: list[bytes] = []  # pieces of one large frame still arriving
        self.big_len = 0
        self.big_need = 0
        self.frag: list[bytes] | None = None
        self.key = base64.b64encode(os.urandom(16))

    def opened(self) -> None:
        assert self.tr is not None
        w = self.w
        self.tr.write(
            b"GET " + w.path + b" HTTP/1.1\r\nHost: " + self.host_header + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + self.key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        tr = self.tr
        if tr is None or self.closed:
            return
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
        mask = _getrandbits(32).to_bytes(4, "big")
        tr.write(head + mask + apply_mask(payload, mask))

    def data_received(self, data: bytes) -> None:
        w = self.w
        w.nbytes += len(data)
        w.reads += 1
        if not self.handshaken:
            data = self.head + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.head = data
                return
            head = data[:end]
            if not head.startswith(b"HTTP/1.1 101"):
                self.fail(head.split(b"\r\n", 1)[0].decode("latin-1"))
                return
            accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
            if accept not in head:
                self.fail("bad Sec-WebSocket-Accept")
                return
            self.handshaken = True
            self.head = b""
            data = data[end + 4 :]
            if w.selfpub:  # a relay (nchan): subscribed once upgraded, no auth
                if not self.ready.done():
                    self.ready.set_result(now_ns())
            elif not w.sio:
                auth: dict[str, Any] = {"token": self.token}
                if self.resume and self.last is not None and self.epoch:
                    auth.update(lastSeq=self.last, epoch=self.epoch)
                self.send_frame(orjson.dumps({"type": "auth", "data": auth}))
            if not data:
                return
        if self.big_need:  # a large frame (a presence snapshot): join once, not per read
            self.big.append(data)
            self.big_len += len(data)
            if self.big_len < self.big_need:
                return
            data = b"".join(self.big)
            self.big = []
            self.big_len = self.big_need = 0
        buf = self.buf + data if self.buf else data
        n = len(buf)
        pos = 0
        now = now_ns()
        while n - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            if ln < 126:
                s = pos + 2
            elif ln == 126:
                if n - pos < 4:
                    break
                ln = (buf[pos + 2] << 8) | buf[pos + 3]
                s = pos + 4
            else:
                if n - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                s = pos + 10
            e = s + ln
            if e > n:
                if e - pos > 65536:
                    self.big = [buf[pos:]]
                    self.big_len = n - pos
                    self.big_need = e - pos
                    self.buf = b""
                    return
                break
            if b0 == 0x81:
                self.on_msg(buf, s, e, now)
            else:
                self.control(b0, buf[s:e], now)
            pos = e
        self.buf = buf[pos:] if pos < n else b""

    def control(self, b0: int, payload: bytes, now: int) -> None:
        op = b0 & 0x0F
        fin = b0 & 0x80
        if op in (1, 2) and not fin:
            self.frag = [payload]
        elif op == 0 and self.frag is not None:
            self.frag.append(payload)
            if fin:
                whole = b"".join(self.frag)
                self.frag = None
                self.on_msg(whole, 0, len(whole), now)
        elif op == 2:
            self.on_msg(payload, 0, len(payload), now)
        elif op == 9:
            self.send_frame(payload, 10)
        elif op == 8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = payload[2:64].decode("utf-8", "replace")
            self.w.close_codes[self.close_code] += 1
            self.closed = True
            if self.tr is not None:
                self.tr.abort()

    def on_other(self, buf: bytes, s: int, e: int, now: int) -> None:
        if not self.w.sio:
            super().on_other(buf, s, e, now)
            return
        if e - s == 1 and buf[s] == 0x32:  # "2": Engine.IO ping
            self.send_frame(b"3")
        elif buf.startswith(b"40", s):
            if not self.ready.done():
                self.ready.set_result(now)
        elif buf.startswith(b"0{", s):
            self.send_frame(b"40" + orjson.dumps({"token": self.token}))
        elif buf.startswith(b"44", s):
            self.fail("socket.io connect error")
        else:
            self.w.other += 1

    def send_chat(self, body: bytes) -> None:
        if self.w.selfpub:
            self.send_frame(body)  # already the whole envelope
        elif self.w.sio:
            self.send_frame(b'42["chat",' + body + b"]")
        else:
            self.send_frame(b'{"type":"chat","data":' + body + b"}")


class SSEClient(Client):
    """``GET`` an event stream; de-chunk; one ``data:`` line per event."""

    def __init__(self, w: Worker, idx: int, token: str, staller: bool, port: int = 0) -> None:
        super().__init__(w, idx, token, staller, port)
        self.chunked = False
        self.raw = b""
        self.left = 0
        self.skip = 0
        self.parts: list[bytes] = []

    def opened(self) -> None:
        assert self.tr is not None
        w = self.w
        self.tr.write(
            b"GET " + w.path + b" HTTP/1.1\r\nHost: " + self.host_header + b"\r\n"
            b"Authorization: Bearer " + self.token.encode() + b"\r\n"
            b"Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        )

    def dechunk(self, data: bytes) -> bytes:
        raw = self.raw + data if self.raw else data
        n = len(raw)
        pos = 0
        out: list[bytes] = []
        while pos < n:
            if self.left:
                take = min(self.left, n - pos)
                out.append(raw[pos : pos + take])
                pos += take
                self.left -= take
                if self.left:
                    break
                self.skip = 2
            if self.skip:
                take = min(self.skip, n - pos)
                pos += take
                self.skip -= take
                if self.skip or pos >= n:
                    break
            crlf = raw.find(b"\r\n", pos)
            if crlf < 0:
                break
            size = int(raw[pos:crlf].split(b";", 1)[0], 16)
            pos = crlf + 2
            if size == 0:
                pos = n
                break
            self.left = size
        self.raw = raw[pos:] if pos < n else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def data_received(self, data: bytes) -> None:
        w = self.w
        w.nbytes += len(data)
        w.reads += 1
        if not self.handshaken:
            data = self.head + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.head = data
                return
            head = data[:end]
            if not head.startswith(b"HTTP/1.1 200"):
                self.fail(head.split(b"\r\n", 1)[0].decode("latin-1"))
                return
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.handshaken = True
            self.head = b""
            data = data[end + 4 :]
            if w.selfpub and not self.ready.done():  # a relay (nchan): subscribed at 200
                self.ready.set_result(now_ns())
        if self.chunked:
            data = self.dechunk(data)
        if not data:
            return
        sep = w.sse_sep
        eol = w.sse_eol
        ls = len(sep)
        if self.parts:  # an event still arriving: scan only the new bytes for its end
            if (self.parts[-1][1 - ls :] + data).find(sep) < 0:
                self.parts.append(data)
                return
            st = b"".join(self.parts) + data
            self.parts = []
        else:
            st = data
        pos = 0
        now = now_ns()
        while True:
            end = st.find(sep, pos)
            if end < 0:
                break
            d = st.find(b"data: ", pos, end)
            if d >= 0:
                de = st.find(eol, d, end)
                self.on_msg(st, d + 6, end if de < 0 else de, now)
            pos = end + ls
        if pos < len(st):
            self.parts = [st[pos:]]


class Poster(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that POSTs chat messages, one at a time."""

    def __init__(self, w: Worker, token: str) -> None:
        self.w = w
        self.auth = b"Authorization: Bearer " + token.encode() + b"\r\n"
        self.tr: asyncio.Transport | None = None
        self.buf = b""
        self.need = -1
        self.status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tr = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self.w.idle.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def post(self, body: bytes) -> None:
        assert self.tr is not None
        self.tr.write(
            self.w.post_head + self.auth + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )

    def data_received(self, data: bytes) -> None:
        w = self.w
        buf = self.buf + data if self.buf else data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].lower()
                self.status = int(head[9:12])
                i = head.find(b"content-length:")
                length = int(head[i + 15 : head.find(b"\r\n", i)]) if i >= 0 else 0
                self.need = end + 4 + length
            if len(buf) < self.need:
                break
            buf = buf[self.need :]
            self.need = -1
            w.post_status[self.status] += 1
            if not self.closed:
                w.idle.append(self)
        self.buf = buf


class Worker:
    def __init__(self, wid: int, pipe: Pipe) -> None:
        self.wid = wid
        self.pipe = pipe
        self.loop = asyncio.get_running_loop()
        self.clients: list[Client] = []
        self.senders: list[WSClient] = []
        self.posters: list[Poster] = []
        self.idle: deque[Poster] = deque()
        self.reads = 0
        self.coalesce_s = 0.001
        self.storm: Storm | None = None
        self.reset_counters()
        self.configure({"proto": "ws", "port": 0, "path": "/", "strict": False})
        self.coalescer = self.loop.create_task(self._coalesce())

    async def _coalesce(self) -> None:
        """Under heavy load, let frames pile up a little before reading them.

        Every millisecond: if more than 64 reads happened since the last look, block
        the loop for ``coalesce_s`` (1 ms). Frames then arrive several per read, and
        a read costs about as much as the parsing of one frame, so one generator
        core absorbs about twice the deliveries. At light load nothing sleeps; at
        heavy load latency grows by at most about a millisecond.
        """
        last = 0
        while True:
            await asyncio.sleep(0.001)
            if self.coalesce_s and self.reads - last > 64:
                time.sleep(self.coalesce_s)  # noqa: ASYNC251 - blocking on purpose
            last = self.reads

    def reset_counters(self) -> None:
        self.lat: dict[int, array.array[int]] = {}
        self.first: dict[int, int] = {}
        self.nbytes = 0
        self.nbytes_mark = 0
        self.acks = 0
        self.other = 0
        self.errors: Counter[str] = Counter()
        self.close_codes: Counter[int] = Counter()
        self.post_status: Counter[int] = Counter()
        self.post_blocked = 0
        self.msgno = 0
        self.pubseq = 0

    def configure(self, t: dict[str, Any]) -> None:
        self.proto = t["proto"]
        self.sio = self.proto == "sio"
        self.port = int(t["port"])
        # several server processes (the Redis cases): clients go round-robin over them
        self.ports = [int(p) for p in (t.get("ports") or [self.port])]
        self.path = str(t["path"]).encode()
        self.host_header = b"127.0.0.1:%d" % self.port
        self.strict = bool(t.get("strict", False))
        # a relay that does not build the envelope (nchan): the sender sends Lastra's
        # whole chat envelope, numbered per generator process (seq check informative)
        self.selfpub = bool(t.get("selfpub", False))
        self.seq_prefix = (
            b'42["chat",{"type":"chat","seq":' if self.sio else b'{"type":"chat","seq":'
        )
        self.seq_plen = len(self.seq_prefix)
        self.sse_sep = str(t.get("sse_sep", "\n\n")).encode()
        self.sse_eol = self.sse_sep[: len(self.sse_sep) // 2]
        post = str(t.get("post_path", "/api/chat-message")).encode()
        self.post_head = (
            b"POST " + post + b" HTTP/1.1\r\nHost: " + self.host_header + b"\r\n"
            b"Content-Type: application/json\r\n"
        )
        self.pad = "x" * int(t.get("pad", 60))
        self.coalesce_s = float(t.get("coalesce_ms", 1.0)) / 1000

    def new_step(self, step: int, now: int) -> array.array[int]:
        arr: array.array[int] = array.array("q")
        self.lat[step] = arr
        self.first[step] = now
        return arr

    # -- commands -------------------------------------------------------------------

    async def cmd_setup(self, target: dict[str, Any]) -> dict[str, Any]:
        await self.cmd_close()
        self.configure(target)
        return {}

    async def _open(
        self, factory: Any, staller: bool = False, port: int = 0
    ) -> asyncio.BaseProtocol:
        """Connect to the server; the protocol from ``factory`` gets the transport.

        uvloop makes the socket itself: a connect of our own socket (``sock_connect``,
        then ``create_connection(sock=…)``) that a timeout cancels while connections are
        refused and reset can leave a live transport registered on a descriptor the OS
        hands out again (uvloop issue 653: "File descriptor N is used by transport"), and
        libuv may then abort the process. The restart storm hit the first (15,018 failed
        attempts in one N=5000 run); the same connect pattern under cancellations and
        resets, alone, got uvloop 0.23 aborted in 2 runs of 3, and a generator that dies
        leaves the coordinator's next command with the ``BrokenPipeError`` an N=5000
        storm once reported. Only the one stalled client needs its own socket: its
        options must be set before the connect, and it is never cancelled in a crowd.
        """
        if not staller:
            host = "127.0.0.1"
            _, proto = await self.loop.create_connection(factory, host, port or self.port)
            return proto
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        # A phone on a bad link: a small receive window and an Internet MSS, so the
        # server's kernel cannot absorb megabytes before its own buffers fill.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1460)
        try:
            await self.loop.sock_connect(sock, ("127.0.0.1", port or self.port))
            _, proto = await self.loop.create_connection(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        return proto

    async def cmd_connect(
        self,
        specs: list[tuple[int, str, bool]],
        concurrency: int,
        timeout: float,
        senders: int,
        posters: int,
        warmup: bool = False,
        phase_timeout: float = 600.0,
    ) -> dict[str, Any]:
        """Open clients (at most ``concurrency`` handshakes in flight); time each to ready.

        The whole phase is cut at ``phase_timeout``: clients not ready by then count
        as failures (a server that takes minutes to accept N clients has its figure).
        """
        cls = SSEClient if self.proto == "sse" else WSClient
        sem = asyncio.Semaphore(concurrency)
        times: list[float] = []
        errors: Counter[str] = Counter()
        first = [0]
        last = [0]
        opened: list[Client] = []

        ports = self.ports

        async def one(pos: int, idx: int, token: str, staller: bool) -> None:
            port = ports[pos % len(ports)]
            async with sem:
                t0 = now_ns()
                if not first[0]:
                    first[0] = t0
                try:
                    proto = await asyncio.wait_for(
                        self._open(lambda: cls(self, idx, token, staller, port), staller, port),
                        timeout,
                    )
                    assert isinstance(proto, Client)
                    opened.append(proto)
                    t1 = await asyncio.wait_for(proto.ready, timeout)
                except Exception as exc:
                    errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                    return
                times.append((t1 - t0) / 1e6)
                last[0] = max(last[0], t1)

        tasks = [asyncio.ensure_future(one(pos, *s)) for pos, s in enumerate(specs)]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=phase_timeout)
            for task in pending:
                task.cancel()
            if pending:
                errors[f"not ready within the {phase_timeout:.0f} s connect phase"] += len(pending)
                await asyncio.wait(pending)
        if warmup:
            for c in opened:
                if c.tr is not None:
                    c.tr.abort()
            return {"ok": len(times), "errors": dict(errors)}
        ready = []
        for c in opened:
            if c.ready.done() and not c.ready.cancelled() and c.ready.exception() is None:
                ready.append(c)
            elif c.tr is not None:
                c.tr.abort()  # too late: not one of the N
        self.clients.extend(ready)
        if self.proto != "sse":
            # senders spread over the server processes (one process: the first clients)
            by_port: dict[int, list[WSClient]] = {}
            for c in sorted(self.clients, key=lambda c: c.idx):
                if isinstance(c, WSClient) and not c.staller:
                    by_port.setdefault(c.port, []).append(c)
            mixed = itertools.zip_longest(*by_port.values())
            self.senders = [c for row in mixed for c in row if c is not None][:senders]
        else:
            tokens = [c.token for c in self.clients if not c.staller][: max(1, senders)]
            for i in range(posters if tokens else 0):
                with contextlib.suppress(Exception):
                    factory = functools.partial(Poster, self, tokens[i % len(tokens)])
                    port = ports[i % len(ports)]
                    p = await asyncio.wait_for(self._open(factory, port=port), timeout)
                    assert isinstance(p, Poster)
                    self.posters.append(p)
        return {
            "times_ms": times,
            "errors": dict(errors),
            "t_first": first[0],
            "t_last": last[0],
            "posters": len(self.posters),
        }

    async def cmd_step(self, step: int, rate: float, duration: float) -> dict[str, Any]:
        """Send ``round(rate × duration)`` chat messages, message k at k/rate (1 ms ticks).

        A message that cannot go out on time (every POST connection busy) waits
        for the next tick; whatever is not sent by ``duration`` is not sent, and
        the shortfall shows in ``sent`` against ``planned``.
        """
        self.nbytes_mark = self.nbytes
        for old in [s for s in self.lat if s != step]:  # stragglers of earlier steps
            del self.lat[old]
            self.first.pop(old, None)
        senders = self.senders
        post = self.proto == "sse"
        planned = max(1, round(rate * duration)) if rate > 0 else 0
        if not planned or (post and not self.posters) or (not post and not senders):
            return {"sent": 0, "planned": 0, "t0": now_ns(), "t1": now_ns(), "blocked": 0}
        wid = self.wid
        pad = self.pad
        idle = self.idle
        dur = int(duration * 1e9)
        t0 = now_ns()
        sent = 0
        k = 0
        blocked = 0
        while sent < planned:
            el = now_ns() - t0
            if el >= dur:
                break
            due = min(planned, int(el * rate / 1e9) + 1) - sent
            while due > 0:
                body = orjson.dumps(
                    {"text": f"|{step}|{now_ns()}|{pad}", "clientId": f"c{wid}-{self.msgno}"}
                )
                if self.selfpub:
                    body = self.envelope(body)
                if post:
                    while idle and idle[0].closed:
                        idle.popleft()
                    if not idle:
                        blocked += 1
                        break
                    idle.popleft().post(body)
                else:
                    sender = senders[k % len(senders)]
                    k += 1
                    sender.send_chat(body)
                self.msgno += 1
                sent += 1
                due -= 1
            await asyncio.sleep(0.001)
        self.post_blocked += blocked
        return {"sent": sent, "planned": planned, "t0": t0, "t1": now_ns(), "blocked": blocked}

    def envelope(self, body: bytes) -> bytes:
        """Lastra's chat envelope around a chat body, for a relay that only forwards bytes."""
        self.pubseq += 1
        seq = self.pubseq
        data = orjson.loads(body)
        msg = {
            "id": uuid.uuid4().hex,
            "ts": int(time.time() * 1000),
            "kind": "user",
            "userId": f"u_bench{self.wid}",
            "userName": f"b{self.wid}",
            **data,
            "seq": seq,
        }
        return orjson.dumps({"type": "chat", "seq": seq, "data": msg})

    def receivers(self) -> int:
        return sum(1 for c in self.clients if c.record and not c.closed)

    async def cmd_collect(
        self, step: int, expected_each: int, timeout: float, quiet: float
    ) -> dict[str, Any]:
        """Wait until every live receiver has ``expected_each`` deliveries of ``step``.

        Gives up after ``timeout`` s, or after ``quiet`` s without a new delivery.
        """
        deadline = now_ns() + int(timeout * 1e9)
        last_count = -1
        last_change = now_ns()
        receivers = self.receivers()
        polls = 0
        while True:
            arr = self.lat.get(step)
            count = len(arr) if arr is not None else 0
            now = now_ns()
            if count != last_count:
                last_count = count
                last_change = now
            polls += 1
            if polls % 20 == 0:
                receivers = self.receivers()
            if count >= expected_each * receivers or now >= deadline:
                break
            if now - last_change > quiet * 1e9:
                break
            await asyncio.sleep(0.005)
        arr = self.lat.pop(step, array.array("q"))
        out = {
            "count": len(arr),
            "receivers": self.receivers(),
            "lat": arr.tobytes(),
            "t_first": self.first.pop(step, 0),
            "t_last_change": last_change,
            "nbytes": self.nbytes - self.nbytes_mark,
            "closed": sum(1 for c in self.clients if c.closed),
            "close_codes": dict(self.close_codes),
            "errors": dict(self.errors),
            "acks": self.acks,
            "post_status": dict(self.post_status),
        }
        return out

    async def cmd_stall(self, pause: bool) -> dict[str, Any]:
        reopened = 0
        live = [c for c in self.clients if c.staller and c.tr is not None and not c.closed]
        gone = [c for c in self.clients if c.staller and c.closed]
        if pause and not live and gone:
            # the would-be staller (a small receive window) was cut as a slow consumer
            # during an overloaded ramp step: connect it again for the stalled test
            old = gone[-1]
            cls = type(old)
            port = old.port
            proto = await asyncio.wait_for(
                self._open(lambda: cls(self, old.idx, old.token, True, port), True, port), 10
            )
            assert isinstance(proto, Client)
            await asyncio.wait_for(proto.ready, 10)
            self.clients.append(proto)
            live, reopened = [proto], 1
        for c in live:
            c.record = False
            if pause:
                c.tr.pause_reading()  # type: ignore[union-attr]
            else:
                c.tr.resume_reading()  # type: ignore[union-attr]
            return {"stalled": 1, "closed": False, "reopened": reopened}
        return {"stalled": 0}

    async def cmd_storm_arm(self, users: int) -> dict[str, Any]:
        """From now on a closed client comes back as the bundled client does (:class:`Storm`)."""
        for slot, c in enumerate(self.clients):
            c.slot = slot
        live = [c for c in self.clients if isinstance(c, WSClient) and not c.closed]
        self.storm = Storm(self, users)
        if self.wid == 0 and live:
            live[0].users = set()  # the observer: is presence complete again?
        return {"armed": len(live)}

    async def cmd_storm_wait(self, timeout: float) -> dict[str, Any]:
        """Wait until every closed client is back (``ready``) and presence converged."""
        st = self.storm
        assert st is not None
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline and not st.finished():  # noqa: ASYNC110 - polls callbacks' counters
            await asyncio.sleep(0.01)
        self.storm = None
        for t in st.tasks:
            t.cancel()
        return st.report()

    async def cmd_check(self) -> dict[str, Any]:
        rows = [(c.last, c.gaps, c.dups, c.closed, c.staller) for c in self.clients]
        return {"rows": rows, "close_codes": dict(self.close_codes), "errors": dict(self.errors)}

    async def cmd_close(self) -> dict[str, Any]:
        for c in self.clients:
            if c.tr is not None:
                c.tr.abort()
        for p in self.posters:
            if p.tr is not None:
                p.tr.abort()
        self.clients = []
        self.senders = []
        self.posters = []
        self.idle.clear()
        self.reset_counters()
        await asyncio.sleep(0.05)
        return {}

    async def serve(self) -> None:
        while True:
            try:
                name, kwargs = await self.loop.run_in_executor(None, self.pipe.recv)
            except (EOFError, OSError):
                return
            if name == "quit":
                await self.cmd_close()
                self.pipe.send({"ok": True})
                return
            try:
                result = await getattr(self, "cmd_" + name)(**kwargs)
                self.pipe.send({"ok": True, **result})
            except (Exception, asyncio.CancelledError) as exc:  # report, keep serving
                self.pipe.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


#: The bundled client's reconnect rule, ``app/static/lastra-client.js``: its ``DEFAULTS``
#: (``reconnectLimit: 20``, ``reconnectInterval: 1000``, ``maxReconnectInterval: 30000``,
#: ``wsOpenTimeout: 6000``), ``_linkLost`` (``if (info.code === 1012) this._quickRetries = 3``)
#: and ``_scheduleReconnect``. The module exports none of them (only ``Status`` and the
#: client), so they are copied here, in seconds: change them together.
RECONNECT_LIMIT = 20  # attempts, then the client gives up
RECONNECT_INTERVAL = 1.0  # the backoff's base, and the whole window of a quick retry
MAX_RECONNECT_INTERVAL = 30.0  # the backoff's cap
QUICK_RETRIES_AFTER_1012 = 3  # a server restart: this many attempts within one interval
WS_OPEN_TIMEOUT = 6.0  # from opening the socket to ``ready``, else the attempt failed


def reconnect_delay(attempt: int, quick: bool) -> float:
    """The wait before the next attempt, as ``_scheduleReconnect`` computes it.

    ``attempt`` counts the attempts since the last ``ready`` (0 for the first) that were
    not quick ones (``_quickSpent`` is subtracted): after a 1012 the 4th attempt waits up
    to ``min(30 s, 1 s × 2^0)``, the 5th up to 2 s. Full jitter: anything from 0 to the cap.
    """
    cap = min(MAX_RECONNECT_INTERVAL, RECONNECT_INTERVAL * (1 if quick else 2**attempt))
    return random.random() * cap


class Storm:
    """A restart storm: every client the server closes comes back as the bundled client
    does (the constants above): after a 1012 (server restart) the first 3 attempts wait
    ``random() × 1 s``, then the n-th after them waits ``random() × min(30 s, 1 s × 2^n)``; after
    another close code the doubling applies from the first attempt, and a 4409 (slow
    consumer) comes straight back. An attempt fails when the connection is refused or
    reset, the handshake is refused, the socket closes before ``ready`` or ``ready`` takes
    longer than 6 s; after 20 attempts the client gives up. It resumes with ``lastSeq`` +
    ``epoch`` in ``auth``.

    Like the bundled client, it does not bound how many connects are in flight: the
    crowd's spread is the jitter alone (a refused or reset connect is cheap; a connect
    whose SYN the full accept queue dropped is retried by the kernel within the 6 s).
    """

    def __init__(self, w: Worker, users: int) -> None:
        self.w = w
        self.users = users
        self.t_first_close = 0
        self.back: list[int] = []  # ready times (ns)
        self.recovered = 0
        self.attempts: Counter[int] = Counter()  # the attempt that succeeded, per client
        self.failures: Counter[str] = Counter()  # why the failed attempts failed
        self.failed_when: dict[str, list[int]] = {}  # per reason: first and last (ns)
        self.close_codes: Counter[int] = Counter()  # what closed the live clients
        self.gave_up = 0
        self.gone = 0
        self.t_converged = 0
        self.observer: Client | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def lost(self, old: Client) -> None:
        if not isinstance(old, WSClient):
            return  # (the would-be stalled client comes back too: it is one of the N users)
        self.gone += 1
        self.close_codes[old.close_code or 1006] += 1
        if not self.t_first_close:
            self.t_first_close = now_ns()
        task = self.w.loop.create_task(self.rejoin(old))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def rejoin(self, old: WSClient) -> None:
        w = self.w
        quick = QUICK_RETRIES_AFTER_1012 if old.close_code == 1012 else 0
        immediate = old.close_code == 4409
        attempt = spent = 0
        while attempt < RECONNECT_LIMIT:
            delay = 0.0 if immediate else reconnect_delay(attempt - spent, quick > 0)
            spent += quick > 0
            quick = max(0, quick - 1)
            immediate = False
            attempt += 1
            await asyncio.sleep(delay)
            new = WSClient(w, old.idx, old.token, False, old.port)
            new.last, new.epoch, new.resume, new.slot = old.last, old.epoch, True, old.slot
            if old.users is not None:
                new.users = set()
                self.observer = new  # from its first frame: presence() times the convergence
            try:
                t = await asyncio.wait_for(self._attempt(new, old.port), WS_OPEN_TIMEOUT)
            except Exception as exc:  # refused, reset, closed, timed out: the attempt failed
                why = self._why(new, exc)
                if why.startswith(type(exc).__name__) and why not in self.failures:
                    # not one of the ways a connection fails: maybe the generator's own
                    # doing, so its first traceback goes to the log
                    traceback.print_exception(exc)
                self.failures[why] += 1
                span = self.failed_when.setdefault(why, [now_ns(), 0])
                span[1] = now_ns()
                if new.tr is not None:
                    new.tr.abort()
                continue
            self.back.append(t)
            self.attempts[attempt] += 1
            self.recovered += bool(new.recovered)
            if 0 <= new.slot < len(w.clients):
                w.clients[new.slot] = new  # the seq check and close see the one that is back
            else:
                w.clients.append(new)
            if new.users is not None:
                self.presence(new, t)
            return
        self.gave_up += 1

    async def _attempt(self, new: WSClient, port: int) -> int:
        """One connection attempt: TCP connect, upgrade, ``auth``, until ``ready``."""
        await self.w._open(lambda: new, False, port)
        return await new.ready

    @staticmethod
    def _why(new: WSClient, exc: BaseException) -> str:
        """A failed attempt's reason, short enough to count."""
        if isinstance(exc, TimeoutError):  # asyncio's is the builtin since 3.11
            return f"no ready within {WS_OPEN_TIMEOUT:.0f} s"
        if isinstance(exc, ConnectionRefusedError):
            return "refused"
        if isinstance(exc, ConnectionResetError):
            return "reset before ready"
        if new.close_code is not None:  # e.g. 1013 server-restart: the old process, leaving
            return f"closed {new.close_code} {new.close_reason} before ready".replace("  ", " ")
        text = str(exc)
        if text.startswith("HTTP/"):
            return "handshake " + text[:40]  # the status line of a refused upgrade
        if isinstance(exc, ConnectionError) and text.startswith("closed before ready"):
            # the socket went without a close frame: a reset (e.g. accepted into the old
            # process's queue, which it closed on exit) or a bare end of stream
            return "reset before ready" if "reset" in text else "dropped before ready"
        # anything else by its type and message, numbers and reprs blanked so it counts
        return f"{type(exc).__name__}: " + re.sub(r"<[^>]*>|\d+", "#", text)[:60]

    def presence(self, client: Client, now: int) -> None:
        if client is self.observer and client.users is not None:
            # above LASTRA_PRESENCE_SNAPSHOT_MAX the list is partial: the counts say it (§8)
            seen = self._observed()
            if seen >= self.users and not self.t_converged:
                self.t_converged = now
            elif seen < self.users:
                self.t_converged = 0

    def _observed(self) -> int:
        """How many users the observer sees: its list, or the server's count when partial."""
        obs = self.observer
        if obs is None:
            return 0
        return obs.online if obs.online is not None else len(obs.users or ())

    def finished(self) -> bool:
        if not self.gone or len(self.back) + self.gave_up < self.gone:
            return False
        return bool(self.t_converged) or bool(self.gave_up)  # nobody left to wait for

    def report(self) -> dict[str, Any]:
        return {
            "closed": self.gone,
            "back": len(self.back),
            "recovered": self.recovered,
            "gave_up": self.gave_up,
            "t_first_close": self.t_first_close,
            "t_last_ready": max(self.back) if self.back else 0,
            "t_ready": self.back,
            "t_converged": self.t_converged,
            "attempts": dict(self.attempts),
            "failures": dict(self.failures),
            "failed_when": self.failed_when,
            "close_codes": dict(self.close_codes),
            "observer_users": self._observed(),
        }


def worker_main(wid: int, pipe: Pipe, cpus: list[int], max_life: float, nice: int = 0) -> None:
    """Entry point of a generator process (``multiprocessing`` spawn target)."""
    import uvloop

    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(cpus))
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.alarm(max(1, int(max_life)))  # hard bound on this process's life

    async def main() -> None:
        await Worker(wid, pipe).serve()

    uvloop.run(main())
