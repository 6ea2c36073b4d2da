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
from clients import QuietServer, server_factory, session, sync_http
from conftest import Server, free_port
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
    assert isinstance(srv, QuietServer)
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
