"""Regression tests for the five holes of issue 14, each reproducing its attack.

Every attack is bounded in count and time and aimed at 127.0.0.1 only; each test
failed on the code before its fix (see the issue's note).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import server_factory, session, sync_http
from support.server import Server, free_port
from test_ops_support import scrape, value
from websockets.sync.client import ClientConnection, connect

ADMIN = "admin-token-for-the-hardening-tests"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    with server_factory(tmp_path) as factory:
        yield factory


def stats(srv: Server, http: httpx.Client) -> dict[str, int]:
    resp = http.get(f"{srv.http}/api/admin/stats", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200, resp.text
    connections: dict[str, int] = resp.json()["connections"]
    return connections


def wait_no_connections(srv: Server, http: httpx.Client, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (held := stats(srv, http)) and time.monotonic() < deadline:
        time.sleep(0.05)  # another process's state: polling is the only way
    assert not held, f"places still held: {held}"


def rss_kib(srv: Server) -> int:
    assert srv.proc is not None
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------ hole 1


BAD_RESUME_POINTS = [
    {"Last-Event-ID": "e:\u00b2".encode("latin-1")},  # str.isdigit() says yes, int() no
    {"Last-Event-ID": b"e:" + b"9" * 5000},  # over int()'s 4,300-digit limit
    {"Last-Event-ID": "e:\u00b3\u00b9".encode("latin-1")},
]
BAD_QUERIES = [{"lastSeq": "\u00b9"}, {"lastSeq": "1" * 4400, "epoch": "x"}]


def test_bad_resume_points_never_leak_a_place(servers: Callable[..., Server]) -> None:
    """25 bad resume points from one user: each stream opens (or is refused) and gives its
    place back; before the fix each answered 500 and kept its place, so the 21st got 503."""
    srv = servers(ADMIN_TOKEN=ADMIN, TRANSPORT="sse")
    me = session(srv.http, "Resumer")
    attempts = [(h, {}) for h in BAD_RESUME_POINTS] + [({}, q) for q in BAD_QUERIES]
    with sync_http(5) as http:
        for i in range(25):
            headers, params = attempts[i % len(attempts)]
            with http.stream(
                "GET",
                f"{srv.http}/api/chat-stream",
                headers={**me.bearer, **headers},
                params=params,
            ) as resp:
                assert resp.status_code == 200, (i, resp.status_code, resp.read())
                first = next(resp.iter_bytes())
                assert first.startswith(b"retry:"), first
        wait_no_connections(srv, http)
        with http.stream("GET", f"{srv.http}/api/chat-stream", headers=me.bearer) as resp:
            assert resp.status_code == 200
    assert "internal error" not in srv.log() and "Traceback" not in srv.log(), srv.log()


# ------------------------------------------------------------------ hole 2


def stalled_ws(stack: contextlib.ExitStack, srv: Server, token: str) -> str:
    """A client that authenticates, learns its peer id, then never reads again.

    A 4 KiB receive buffer and a 4-frame client queue: the kernel holds almost
    nothing for it, so what it does not read piles up in the server.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    ws: ClientConnection = stack.enter_context(
        connect(
            srv.ws,
            sock=sock,
            proxy=None,
            ping_interval=None,
            max_queue=4,
            max_size=None,
            close_timeout=0.5,
        )
    )
    ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
    while True:
        env = json.loads(ws.recv(timeout=5))
        if env["type"] == "ready":
            return str(env["data"]["peerId"])


def test_stalled_receivers_cannot_pin_memory(servers: Callable[..., Server]) -> None:
    """Four receivers stop reading; 300 signals of 60 KB each are sent to every one of them
    (72 MB). Each is closed as a slow consumer once 4 MiB wait for it, and the server's
    memory stays bounded; before the fix all 1,024 frames (60 MB each) had to queue first."""
    srv = servers(
        ADMIN_TOKEN=ADMIN,
        RATE_SIGNAL="100000",
        RATE_SIGNAL_BURST="100000",
        PRESENCE_GRACE="0",
    )
    sdp = "v=0 " + "a" * 60_000
    with contextlib.ExitStack() as stack:
        receivers = []
        for i in range(4):
            receivers.append(stalled_ws(stack, srv, session(srv.http, f"Stalled{i}").token))
        sender = stack.enter_context(
            connect(
                srv.ws,
                proxy=None,
                ping_interval=None,
                max_queue=4,
                max_size=None,
                close_timeout=0.5,
            )
        )
        sender.send(json.dumps({"type": "auth", "data": {"token": session(srv.http).token}}))
        before = rss_kib(srv)
        for _ in range(300):
            for peer in receivers:
                signal = {"type": "offer", "sdp": sdp}
                sender.send(
                    json.dumps({"type": "webrtc-signal", "data": {"to": peer, "signal": signal}})
                )
        deadline = time.monotonic() + 15
        with sync_http(5) as http:
            while time.monotonic() < deadline:
                overflows = value(
                    scrape(srv, http), "lastra_outbound_overflow_total", transport="ws"
                )
                if overflows >= 4:
                    break
                time.sleep(0.1)  # another process's counter: polling is the only way
        grown_mb = (rss_kib(srv) - before) / 1024
        assert overflows >= 4, f"only {overflows} slow consumers closed; RSS grew {grown_mb:.0f} MB"
        assert grown_mb < 40, f"RSS grew {grown_mb:.0f} MB"


# ------------------------------------------------------------------ hole 5


def test_the_redis_password_never_reaches_the_log(servers: Callable[..., Server]) -> None:
    """A Redis that does not answer: the server says where it waits, without the password."""
    password = "s3cret-redis-password"
    closed_port = free_port()  # nothing listens there
    srv = servers(
        start=False,
        BACKEND="redis",
        REDIS_URL=f"redis://default:{password}@127.0.0.1:{closed_port}/0",
    )
    assert isinstance(srv, Server)
    srv.launch()
    try:
        deadline = time.monotonic() + 10
        while "waiting for Redis" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)  # another process's log: polling is the only way
    finally:
        srv.stop(timeout=5)
    log = srv.log()
    assert "waiting for Redis" in log, log
    assert password not in log, log
    assert "redis://default:[redacted]@127.0.0.1" in log, log


# ------------------------------------------------------------------ holes 3 and 4


def raw_connection(srv: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def answer(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server says until it closes (or ``timeout``)."""
    sock.settimeout(timeout)
    got = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            got += chunk
    return got


def send_until_refused(sock: socket.socket, head: bytes, filler: bytes, limit: int) -> int:
    """Send ``head`` then ``filler`` up to ``limit`` bytes; how much went before the server
    stopped taking it (a reset, or a full window once it stopped reading)."""
    sent = 0
    sock.settimeout(2)
    with contextlib.suppress(OSError):
        sock.sendall(head)
        while sent < limit:
            sock.sendall(filler)
            sent += len(filler)
    return sent


def test_huge_and_numerous_headers_are_refused(servers: Callable[..., Server]) -> None:
    """A 64 MiB header, 100,000 headers, and eight unfinished huge heads: each is answered
    431 and closed, and the server's memory stays flat; before the fix the first two got
    200 OK and the eight added 514 MB."""
    srv = servers()
    before = rss_kib(srv)
    with raw_connection(srv) as sock:
        send_until_refused(
            sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536, 64 << 20
        )
        assert answer(sock).startswith(b"HTTP/1.1 431"), "a 64 MiB header was not refused"
    with raw_connection(srv) as sock:
        many = b"".join(b"X-%d: v\r\n" % i for i in range(100_000))
        send_until_refused(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", many, len(many))
        assert answer(sock).startswith(b"HTTP/1.1 431"), "100,000 headers were not refused"
    socks = [raw_connection(srv) for _ in range(8)]
    try:
        for sock in socks:
            send_until_refused(sock, b"GET / HTTP/1.1\r\nX-Big: ", b"b" * 65536, 8 << 20)
        for sock in socks:
            assert answer(sock).startswith(b"HTTP/1.1 431")
    finally:
        for sock in socks:
            sock.close()
    grown_mb = (rss_kib(srv) - before) / 1024
    assert grown_mb < 20, f"RSS grew {grown_mb:.0f} MB"
    with sync_http() as http:  # and a normal request still passes
        assert http.get(f"{srv.http}/healthz", headers={"X-Normal": "x" * 4000}).status_code == 200


def test_requests_that_never_complete_are_closed(servers: Callable[..., Server]) -> None:
    """100 idle, 100 slow-header (one byte every 0.4 s) and 40 slow-body connections, with
    1 s header and body timeouts: the server closes every one within a few seconds, while
    an SSE stream and a WebSocket opened at the same time stay open. Before the fix none of
    them was closed after 90 s."""
    srv = servers(HEADER_TIMEOUT="1", BODY_TIMEOUT="1", SSE_KEEPALIVE="0.5")
    me = session(srv.http, "Patient")
    idle = [raw_connection(srv) for _ in range(100)]
    slow_head = [raw_connection(srv) for _ in range(100)]
    slow_body = [raw_connection(srv) for _ in range(40)]
    everything = idle + slow_head + slow_body
    try:
        with contextlib.ExitStack() as stack:
            http = stack.enter_context(sync_http(10))
            stream = stack.enter_context(
                http.stream("GET", f"{srv.http}/api/chat-stream", headers=me.bearer)
            )
            assert stream.status_code == 200
            ws = stack.enter_context(connect(srv.ws, proxy=None, close_timeout=0.5))
            ws.send(json.dumps({"type": "auth", "data": {"token": me.token}}))
            for sock in slow_head:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for sock in slow_body:
                sock.sendall(
                    b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 1000\r\n\r\n{"userName": '
                )
            deadline = time.monotonic() + 8
            open_socks = list(everything)
            for sock in everything:
                sock.setblocking(False)
            while open_socks and time.monotonic() < deadline:
                for sock in list(open_socks):
                    try:
                        if sock.recv(65536) == b"":
                            open_socks.remove(sock)
                    except BlockingIOError:
                        if sock in slow_head:
                            with contextlib.suppress(OSError):
                                sock.send(b"X")  # trickle: must not keep it alive
                    except OSError:
                        open_socks.remove(sock)
                time.sleep(0.4)  # the trickle's pace
            assert not open_socks, f"{len(open_socks)} of {len(everything)} still open"
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")
            ws.send(json.dumps({"type": "ping", "data": {}, "ref": "still-here"}))
            while json.loads(ws.recv(timeout=5)).get("type") != "pong":
                pass
            # the stream is still alive: its keep-alive comments keep coming
            seen = []
            for line in lines:
                seen.append(line)
                if line.startswith(": keep-alive"):
                    break
            else:
                raise AssertionError(f"the SSE stream ended: {seen[-5:]}")
    finally:
        for sock in everything:
            sock.close()
