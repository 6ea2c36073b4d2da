"""Fault-injection helpers for the durability tests (``tests/test_durability_*.py``).

What ``clients.py`` does not cover:

- ``ResumingClient``: a user that keeps one tab open across server kills and cut
  connections, retries every unacked ``chat`` with the same ``clientId`` and resumes
  with ``lastSeq``+``epoch`` (WebSocket) or ``Last-Event-ID`` (SSE); it keeps its own
  view of the durable history (deduped by ``seq``) for the final comparison.
- ``Blaster``: a lean WebSocket sender/reader for full-speed load (no inbox kept).
- ``StalledWs`` / ``RawSse``: consumers that stop reading with tiny socket buffers,
  so the server's send path really backs up, and read the rest later.
- process and store probes: ``rss_bytes``/``RssSampler`` (``/proc/<pid>/status``),
  ``db_events``/``db_meta`` (the SQLite file itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from support.clients import Session, SseClient, WsClient
from support.server import Server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

__all__ = [
    "ARTIFACTS",
    "MB",
    "SMALL_RCVBUF",
    "Blaster",
    "Drained",
    "RawSse",
    "ResumingClient",
    "RssSampler",
    "StalledWs",
    "cut",
    "db_events",
    "db_meta",
    "rss_bytes",
    "soak_rounds",
    "wait_for",
]

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"
MB = 1024 * 1024


def soak_rounds(default: int = 3) -> int:
    """Kill/restart rounds: ``LASTRA_SOAK_ROUNDS`` (``make soak`` raises it)."""
    return max(1, int(os.environ.get("LASTRA_SOAK_ROUNDS", str(default))))


async def wait_for(
    cond: Callable[[], bool], what: str, timeout: float, every: float = 0.02
) -> None:
    """Poll ``cond`` until it holds (for state that no client event announces)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(every)


# --------------------------------------------------------------------------- probes


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (``VmRSS``), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's RSS in the background; ``peak`` is the highest seen."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid = pid
        self.every = every
        self.peak = rss_bytes(pid)
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            self.samples += 1
            await asyncio.sleep(self.every)

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.peak = max(self.peak, rss_bytes(self.pid))
        return self.peak


def _db(data_dir: Path) -> sqlite3.Connection:
    path = data_dir / "lastra.db"
    assert path.exists(), f"no SQLite file at {path}"
    return sqlite3.connect(path, timeout=10)


def db_meta(data_dir: Path) -> dict[str, str]:
    with contextlib.closing(_db(data_dir)) as db:
        return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}


def db_events(data_dir: Path) -> list[tuple[int, str, dict[str, Any]]]:
    """``(seq, type, data)`` of every stored durable event, in seq order."""
    with contextlib.closing(_db(data_dir)) as db:
        rows = db.execute("SELECT seq, type, data FROM events ORDER BY seq").fetchall()
    return [(int(s), str(t), json.loads(bytes(d))) for s, t, d in rows]


# --------------------------------------------------------------------------- cutting


def cut(conn: WsClient | SseClient) -> None:
    """Drop a connection at the TCP level, mid-whatever (no close frame, no goodbye)."""
    if isinstance(conn, WsClient):
        conn.ws.transport.abort()
        return
    if conn.response is None:
        return
    stream = conn.response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- fault client

CONNECT_ERRORS = (OSError, httpx.HTTPError, WebSocketException, AssertionError, TimeoutError)


@dataclass
class Owed:
    """One chat message this client owes the chat, and every ack it drew."""

    client_id: str
    text: str
    attempts: int = 0
    acks: list[dict[str, Any]] = field(default_factory=list)


class ResumingClient:
    """One user with one tab that never gives up: resumes, retries, keeps a view.

    ``view`` maps ``seq`` to ``(type, data)`` from everything received (replays,
    live broadcasts, ``history`` items); ``order`` lists seqs in first-arrival order.
    ``problems`` collects protocol violations seen on the way (asserted empty later).
    """

    def __init__(self, server: Server, user: Session, transport: str, rng: random.Random) -> None:
        self.server = server
        self.user = user
        self.transport = transport
        self.rng = rng
        self.name = user.userName
        self.view: dict[int, tuple[str, dict[str, Any]]] = {}
        self.order: list[int] = []
        self.epoch: str | None = None
        self.sent: dict[str, Owed] = {}
        self.unacked: list[str] = []
        self.conn: WsClient | SseClient | None = None
        self.problems: list[str] = []
        self.connects = 0
        self.connect_failures = 0
        self.resumes = 0
        self.errors = 0
        self.error_replies: list[dict[str, Any]] = []
        self.dup_probes = 0
        self._seen_upto = 0  # index into conn.received already ingested
        self._conn_last: int | None = None  # last seq ingested on the current connection

    # -- view

    @property
    def last_seq(self) -> int:
        return max(self.view, default=0)

    def ingest(self) -> None:
        """Fold what the current connection received since last time into ``view``."""
        conn = self.conn
        if conn is None:
            return
        new = conn.received[self._seen_upto :]
        self._seen_upto = len(conn.received)
        for env in new:
            kind = env.get("type")
            if kind == "ready":
                data = env["data"]
                if self.epoch is not None and data["epoch"] != self.epoch:
                    self.problems.append(f"epoch changed {self.epoch} -> {data['epoch']}")
                self.epoch = data["epoch"]
            elif kind == "history":
                for item in env["data"]["messages"]:
                    self._record(int(item["seq"]), "chat", item)
            elif "seq" in env:
                self._record(int(env["seq"]), str(kind), env["data"])
        # what no ``expect`` will take: keep only replies, so waits stay cheap
        conn.pending = [e for e in conn.pending if e.get("type") in ("ack", "error")]

    def _record(self, seq: int, kind: str, data: dict[str, Any]) -> None:
        last = self._conn_last
        if last is not None and seq != last + 1:
            self.problems.append(
                f"{self.transport} {self.name}: seq {seq} after {last} on one connection"
            )
        self._conn_last = seq
        if data.get("seq") != seq:
            self.problems.append(f"seq {seq} carries data.seq {data.get('seq')}")
        old = self.view.get(seq)
        if old is None:
            self.view[seq] = (kind, data)
            self.order.append(seq)
        elif old != (kind, data):
            self.problems.append(f"seq {seq} seen as two different events: {old} / {(kind, data)}")

    # -- connections

    async def connect(self) -> bool:
        """One attempt to open a tab, resuming when we know an epoch."""
        await self.drop()
        resume = self.epoch is not None
        last = self.last_seq
        try:
            conn = await self._open(last if resume else None)
        except CONNECT_ERRORS:
            self.connect_failures += 1
            return False
        self.connects += 1
        self.conn, self._seen_upto, self._conn_last = conn, 0, None
        if not resume:
            pass
        elif conn.ready.get("epoch") != self.epoch:
            self.problems.append(f"epoch changed on resume: {conn.ready}")
        elif conn.ready.get("recovered") is not True:
            self.problems.append(f"resume from {last} not recovered: {conn.ready}")
        else:
            self.resumes += 1
            self._conn_last = last
        self.ingest()
        return True

    async def _open(self, last: int | None) -> WsClient | SseClient:
        """A tab that got ``ready``; closed again if it does not get that far."""
        if self.transport == "ws":
            conn: WsClient | SseClient = await WsClient.connect(self.server.ws, self.user)
        else:
            leid = None if last is None else f"{self.epoch}:{last}"
            conn = await SseClient.connect(
                self.server.http, self.user, last_event_id=leid, settle=False
            )
        try:
            if isinstance(conn, WsClient):
                epoch = None if last is None else self.epoch
                await conn.auth(self.user.token, last_seq=last, epoch=epoch, settle=False)
            else:
                assert conn.status == 200, f"SSE stream -> {conn.status} {conn.body}"
            conn.ready = (await conn.expect("ready", timeout=10))["data"]
        except BaseException:
            await conn.close()
            raise
        return conn

    async def drop(self) -> None:
        """Forget the current connection (after taking what it brought)."""
        conn = self.conn
        if conn is not None:
            self.ingest()
            self.conn = None
            await conn.close()

    @property
    def live(self) -> bool:
        return self.conn is not None and not self.conn.closed.is_set()

    # -- sending

    def _new_message(self) -> str:
        cid = f"{self.name}-{len(self.sent)}-{uuid.uuid4().hex[:6]}"
        text = f"{self.name} says {len(self.sent)} " + "z" * self.rng.randint(1, 200)
        self.sent[cid] = Owed(cid, text)
        self.unacked.append(cid)
        return cid

    def _batch(self, stopping: bool) -> list[str]:
        size = self.rng.randint(1, 4)
        batch = self.unacked[:size]
        while not stopping and len(batch) < size:
            batch.append(self._new_message())
        acked = [cid for cid, s in self.sent.items() if s.acks]
        if acked and self.rng.random() < 0.05:
            batch.append(self.rng.choice(acked))  # a deliberate duplicate
            self.dup_probes += 1
        return batch

    def _acked(self, cid: str, data: dict[str, Any]) -> None:
        sent = self.sent[cid]
        sent.acks.append(data)
        if cid in self.unacked:
            self.unacked.remove(cid)

    async def _send_ws(self, conn: WsClient, batch: list[str]) -> None:
        for cid in batch:
            self.sent[cid].attempts += 1
            await conn.send("chat", {"text": self.sent[cid].text, "clientId": cid}, ref=cid)
        waiting = set(batch)
        while waiting:
            env = await conn.expect_any(
                ("ack", "error"), lambda d: d.get("ref") in waiting, timeout=5
            )
            assert env is not None
            cid = env["data"]["ref"]
            waiting.discard(cid)
            if env["type"] == "ack":
                self._acked(cid, env["data"])
            else:
                self.error_replies.append(env["data"])

    async def _send_sse(self, conn: SseClient, batch: list[str]) -> None:
        for cid in batch:
            self.sent[cid].attempts += 1
        replies = await asyncio.gather(
            *(
                conn.request("chat", {"text": self.sent[cid].text, "clientId": cid}, timeout=5)
                for cid in batch
            ),
            return_exceptions=True,
        )
        for cid, reply in zip(batch, replies, strict=True):
            if isinstance(reply, BaseException):
                self.errors += 1
            elif reply.ok:
                self._acked(cid, reply.data)
            else:
                self.error_replies.append(reply.data)

    async def run(self, stopping: asyncio.Event, pace: float = 0.03) -> None:
        """Chat until ``stopping`` and every message is acked; then a final resume."""
        while not (stopping.is_set() and not self.unacked):
            if not self.live and not await self.connect():
                await asyncio.sleep(0.05 + self.rng.random() * 0.1)  # server down: back off
                continue
            conn = self.conn
            assert conn is not None
            batch = self._batch(stopping.is_set())
            try:
                if isinstance(conn, WsClient):
                    await self._send_ws(conn, batch)
                else:
                    await self._send_sse(conn, batch)
            except CONNECT_ERRORS:
                self.errors += 1
            self.ingest()
            await asyncio.sleep(self.rng.random() * pace)  # pacing, not waiting
        # the final resume: a fresh tab picking up from what this client has
        for _ in range(200):
            if await self.connect():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name}: no final resume within 200 attempts")

    async def catch_up(self, seq: int, timeout: float) -> None:
        """Wait until the live connection has brought everything up to ``seq``."""
        conn = self.conn
        assert conn is not None

        def done() -> bool:
            self.ingest()
            return self.last_seq >= seq

        await conn.wait_until(done, f"{self.name} catching up to seq {seq}", timeout)
        self.ingest()


# --------------------------------------------------------------------------- load


class Blaster:
    """A WebSocket user that sends at full speed (a bounded window of unacked chats)
    and reads everything, keeping only counts: bytes, frames, durable seqs in order."""

    def __init__(self, ws: ClientConnection, user: Session) -> None:
        self.ws = ws
        self.user = user
        self.bytes = 0
        self.frames = 0
        self.last_seq = 0
        self.out_of_order = 0
        self.acked = 0
        self.errors: list[str] = []
        self.close_code: int | None = None
        self._window = asyncio.Semaphore(1)
        self._acked_event = asyncio.Event()
        self.ready = asyncio.Event()
        self.epoch: str | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, server: Server, user: Session) -> Blaster:
        ws = await connect(
            server.ws, proxy=None, ping_interval=None, compression=None, max_size=None
        )
        await ws.send(json.dumps({"type": "auth", "data": {"token": user.token}}))
        blaster = cls(ws, user)
        await asyncio.wait_for(blaster.ready.wait(), 10)
        return blaster

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.bytes += len(message)
                self.frames += 1
                head = message[:40]
                if head.startswith('{"type":"ack"'):
                    self.acked += 1
                    self._window.release()
                    self._acked_event.set()
                elif head.startswith('{"type":"error"'):
                    self.errors.append(str(message)[:200])
                    self._window.release()
                elif '"seq":' in head:
                    seq = json.loads(message)["seq"]
                    if seq <= self.last_seq:
                        self.out_of_order += 1
                    self.last_seq = seq
                elif head.startswith('{"type":"ready"'):
                    self.epoch = json.loads(message)["data"]["epoch"]
                    self.ready.set()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code

    async def send(self, count: int, text_chars: int, window: int = 8) -> None:
        """``count`` chats of ``text_chars`` characters, at most ``window`` unacked."""
        self._window = asyncio.Semaphore(window)
        start = self.acked
        for i in range(count):
            await asyncio.wait_for(self._window.acquire(), 10)
            body = f"{i} " + "x" * (text_chars - 8)
            frame = {"type": "chat", "data": {"text": body, "clientId": uuid.uuid4().hex}}
            await self.ws.send(json.dumps(frame))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while self.acked - start < count and not self.errors:
            assert loop.time() < deadline, f"only {self.acked - start}/{count} acked"
            self._acked_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked_event.wait(), 1)
        assert not self.errors, self.errors[:3]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


# --------------------------------------------------------------------------- stalled readers


SMALL_RCVBUF = 65536
"""A stalled tab's receive buffer: small enough to fill fast, but not below the
loopback MSS, where a reader that resumes crawls on TCP persist timers."""


def _small_socket(port: int, rcvbuf: int) -> socket.socket:
    """A connected TCP socket with a tiny receive buffer (set before connect)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


@dataclass
class Drained:
    """What a stalled consumer found when it read again."""

    envelopes: list[dict[str, Any]]
    seqs: list[int]
    close_code: int | None = None
    close_reason: str | None = None
    comments: list[str] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    retry_at: list[int] = field(default_factory=list)  # how many events came before each
    ended: bool = False  # SSE: the server finished the response body
    bytes: int = 0


class StalledWs:
    """A WebSocket tab that authenticates, then stops reading.

    A small ``SO_RCVBUF`` and a flow-control window of a few frames (``max_queue``)
    make the server's writes back up quickly; ``drain`` reads everything later.
    """

    def __init__(self, ws: ClientConnection, user: Session) -> None:
        self.ws = ws
        self.user = user

    @classmethod
    async def open(cls, server: Server, user: Session, rcvbuf: int = SMALL_RCVBUF) -> StalledWs:
        sock = _small_socket(server.port, rcvbuf)
        ws = await connect(
            server.ws,
            sock=sock,
            proxy=None,
            ping_interval=None,
            compression=None,
            max_size=None,
            max_queue=(2, 1),
            close_timeout=2,
        )
        await ws.send(json.dumps({"type": "auth", "data": {"token": user.token}}))
        return cls(ws, user)

    async def drain(self, timeout: float = 20.0) -> Drained:
        """Read until the server closes; keeps envelopes (without chat texts)."""
        out = Drained([], [])

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in self.ws:
                    out.bytes += len(message)
                    env = json.loads(message)
                    if env.get("type") == "chat":
                        env["data"] = {k: v for k, v in env["data"].items() if k != "text"}
                    out.envelopes.append(env)
                    if "seq" in env:
                        out.seqs.append(int(env["seq"]))

        await asyncio.wait_for(read(), timeout)
        out.close_code, out.close_reason = self.ws.close_code, self.ws.close_reason
        return out

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


class RawSse:
    """An ``/api/chat-stream`` reader that keeps every line (``retry:`` too) and can
    stall: with ``read=False`` nothing reads the socket until ``drain``."""

    def __init__(self, http: httpx.AsyncClient, response: httpx.Response, user: Session) -> None:
        self.http = http
        self.response = response
        self.user = user
        self.result = Drained([], [])
        self.ids: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    @classmethod
    async def open(
        cls,
        server: Server,
        user: Session,
        *,
        last_event_id: str | None = None,
        rcvbuf: int | None = None,
        read: bool = True,
    ) -> RawSse:
        options = [] if rcvbuf is None else [(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)]
        transport = httpx.AsyncHTTPTransport(socket_options=options)
        http = httpx.AsyncClient(
            base_url=server.http,
            transport=transport,
            timeout=httpx.Timeout(5.0, read=None),
            trust_env=False,
        )
        headers = {"Accept": "text/event-stream", **user.bearer}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        request = http.build_request("GET", "/api/chat-stream", headers=headers)
        response = await http.send(request, stream=True)
        assert response.status_code == 200, response.status_code
        raw = cls(http, response, user)
        if read:
            raw.start()
        return raw

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        out = self.result
        data: list[str] = []
        event_id: str | None = None
        try:
            async for line in self.response.aiter_lines():
                out.bytes += len(line) + 1
                if line == "":
                    if data:
                        env = json.loads("\n".join(data))
                        if env.get("type") == "chat":
                            env["data"] = {k: v for k, v in env["data"].items() if k != "text"}
                        out.envelopes.append(env)
                        if "seq" in env:
                            out.seqs.append(int(env["seq"]))
                        if event_id is not None:
                            self.ids.append(event_id)
                    data, event_id = [], None
                elif line.startswith(":"):
                    out.comments.append(line)
                elif line.startswith("retry:"):
                    out.retry.append(line)
                    out.retry_at.append(len(out.envelopes))
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                self._arrived.set()
            out.ended = True
        except httpx.HTTPError as exc:
            out.comments.append(f"<transport error: {exc!r}>")
        finally:
            self._arrived.set()

    async def wait_until(self, cond: Callable[[], bool], what: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            remaining = deadline - loop.time()
            if remaining <= 0 or (self._task is not None and self._task.done() and not cond()):
                raise AssertionError(f"SSE: {what} never happened; got {self.result.comments}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def drain(self, timeout: float = 20.0) -> Drained:
        """Read (again) until the server ends the stream."""
        self.start()
        assert self._task is not None
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        return self.result

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            await self.response.aclose()
        await self.http.aclose()
