"""The concerns of issue 14, each decided: one test per decision, on 127.0.0.1.

One server carries most of the settings (host allow-list, per-address cap, moderators,
a tight session bucket); its users are minted tokens, so the session bucket only
counts what the forwarded-header test sends.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import server_factory, sync_http
from support.fuzzer import frame_bytes
from support.server import Server
from test_ops_support import mint, scrape, value
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

MOD = "u_moderator0001"


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "ALLOWED_HOSTS": "127.0.0.1,chat.example.com",
    "MAX_ADDRESS_CONNECTIONS": "3",
    "MODERATORS": MOD,
    "SESSION_RATE": "0.001",
    "SESSION_BURST": "3",
    "LOG_LEVEL": "info",
}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    with server_factory(tmp_path) as factory:
        yield factory


def bearer(user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(user_id)}"}


def ws_open(
    stack: contextlib.ExitStack, srv: Server, token: str, **extra: object
) -> ClientConnection:
    ws: ClientConnection = stack.enter_context(
        connect(srv.ws, proxy=None, close_timeout=0.5, **extra)  # type: ignore[arg-type]
    )
    ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
    return ws


def first_event(ws: ClientConnection) -> dict[str, object]:
    env: dict[str, object] = json.loads(ws.recv(timeout=5))
    return env


# ------------------------------------------------------------------ forwarded headers


def test_forwarded_for_is_not_believed_from_unlisted_addresses(srv: Server) -> None:
    """A local client cannot reset its session bucket by inventing X-Forwarded-For."""
    codes = []
    with sync_http() as http:
        for i in range(5):
            resp = http.post(
                f"{srv.http}/api/session",
                json={"userName": f"Spoof{i}"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            codes.append(resp.status_code)
    assert codes == [200, 200, 200, 429, 429], codes


def test_forwarded_for_is_believed_from_a_listed_proxy(servers: Callable[..., Server]) -> None:
    srv = servers(FORWARDED_ALLOW_IPS="127.0.0.1", SESSION_RATE="0.001", SESSION_BURST="1")
    with sync_http() as http:
        for i in range(3):
            resp = http.post(
                f"{srv.http}/api/session",
                json={"userName": f"Proxied{i}"},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            assert resp.status_code == 200, resp.text  # one bucket per real client


# ------------------------------------------------------------------ per-address cap


def test_one_address_cannot_hold_more_than_its_share(srv: Server) -> None:
    """LASTRA_MAX_ADDRESS_CONNECTIONS=3: the fourth stream from 127.0.0.1 (a fourth user)
    is refused 1013 address-full, and one place comes back when one closes."""
    with contextlib.ExitStack() as stack:
        for i in range(3):
            ws = ws_open(stack, srv, mint(f"u_addr{i}"))
            assert first_event(ws)["type"] == "ready"
        ws = ws_open(stack, srv, mint("u_addr3"))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1013 and ws.close_reason == "address-full"
        with sync_http() as http:
            resp = http.get(f"{srv.http}/api/chat-stream", headers=bearer("u_addr4"))
            assert resp.status_code == 503, resp.text


# ------------------------------------------------------------------ host allow-list


def test_a_host_not_listed_is_refused(srv: Server) -> None:
    """DNS rebinding: Host evil.com with a matching Origin is refused, HTTP and WebSocket."""
    with sync_http() as http:
        evil = {"Host": "evil.com", "Origin": "http://evil.com"}
        resp = http.post(f"{srv.http}/api/session", json={"userName": "Rebound"}, headers=evil)
        assert resp.status_code == 400 and resp.json()["code"] == "invalid", resp.text
        assert http.get(f"{srv.http}/healthz", headers={"Host": "chat.example.com"}).is_success
        assert http.get(f"{srv.http}/healthz").is_success
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(
            b"GET /api/chat.ws HTTP/1.1\r\nHost: evil.com\r\nOrigin: http://evil.com\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 403"), "the WebSocket handshake passed"


# ------------------------------------------------------------------ moderators


def test_only_moderators_clear_and_toggle_bots(srv: Server) -> None:
    with sync_http() as http:
        for path, body in (
            ("/api/chat-clear", {}),
            ("/api/bot-toggle", {"bot": "pip", "enabled": False}),
        ):
            resp = http.post(f"{srv.http}{path}", json=body, headers=bearer("u_nobody00001"))
            assert resp.status_code == 403 and resp.json()["code"] == "forbidden", resp.text
            resp = http.post(f"{srv.http}{path}", json=body, headers=bearer(MOD))
            assert resp.status_code == 200, resp.text
        http.post(
            f"{srv.http}/api/bot-toggle", json={"bot": "pip", "enabled": True}, headers=bearer(MOD)
        )


# ------------------------------------------------------------------ names


INVISIBLE = ["\u3164", "\u2800\u2800", " \u200b ", "\u202eevil", "\u115f\u1160", "\u0301"]


def test_blank_or_invisible_names_are_refused(servers: Callable[..., Server]) -> None:
    srv = servers()
    with sync_http() as http:
        for name in INVISIBLE:
            resp = http.post(f"{srv.http}/api/session", json={"userName": name})
            assert resp.status_code in (400, 422), (name, resp.text)
            assert resp.json()["code"] == "invalid", (name, resp.text)
        assert http.post(f"{srv.http}/api/session", json={"userName": "عائشة"}).is_success


# ------------------------------------------------------------------ close codes


def test_a_bad_resume_point_with_a_good_token_closes_1008(srv: Server) -> None:
    with contextlib.ExitStack() as stack:
        ws = stack.enter_context(connect(srv.ws, proxy=None, close_timeout=0.5))
        ws.send(json.dumps({"type": "auth", "data": {"token": mint("u_resume01"), "lastSeq": "x"}}))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (1008, "invalid-auth")


def test_client_close_codes_do_not_grow_the_label_set(srv: Server) -> None:
    """Forty clients close with forty private codes: one ``other`` series, not forty."""
    for i in range(40):
        with contextlib.ExitStack() as stack:
            ws = ws_open(stack, srv, mint(f"u_closer{i % 3}"))
            assert first_event(ws)["type"] == "ready"
            ws.close(4100 + i)
    deadline = time.monotonic() + 5
    while True:
        snap = scrape(srv)
        codes = {dict(labels)["code"] for name, labels in snap if name == "lastra_closes_total"}
        if value(snap, "lastra_closes_total", code="other", transport="ws") >= 40:
            break
        assert time.monotonic() < deadline, codes
        time.sleep(0.1)  # another process's counter: polling is the only way
    assert not any(code.startswith("41") for code in codes), codes


def test_a_metrics_flood_renders_a_bounded_number_of_times(srv: Server) -> None:
    """1,000 scrapes as fast as one client can: answered, and at most ~30 + 10/s renders
    (renders show as changing bodies while the counters move)."""
    bodies = set()
    with sync_http() as http:
        started = time.monotonic()
        for _ in range(1000):
            resp = http.get(f"{srv.http}/metrics")
            assert resp.status_code == 200
            bodies.add(resp.content)
        took = time.monotonic() - started
    assert len(bodies) <= 30 + 10 * took + 2, (len(bodies), took)


# ------------------------------------------------------------------ aborted bodies


def test_an_aborted_body_is_one_info_line(srv: Server) -> None:
    token = mint("u_aborter01")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(
                b"POST /api/chat-message HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"text": '
            )
    deadline = time.monotonic() + 5
    while srv.log().count("client went away") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)  # another process's log: polling is the only way
    lines = [json.loads(line) for line in srv.log().splitlines() if "went away" in line]
    assert len(lines) == 3 and {line["level"] for line in lines} == {"info"}, lines
    assert "Traceback" not in srv.log() and '"level":"error"' not in srv.log(), srv.log()


# ------------------------------------------------------------------ readyz


def test_readyz_fails_while_the_store_cannot_write(servers: Callable[..., Server]) -> None:
    """Another process holds SQLite's write lock: not ready, and the log says why."""
    srv = servers(BACKEND="sqlite", LOG_LEVEL="info")
    with sync_http(15) as http:
        assert http.get(f"{srv.http}/readyz").status_code == 200
        db = sqlite3.connect(next(srv.data_dir.glob("*.db")), isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            resp = http.get(f"{srv.http}/readyz")
            assert resp.status_code == 503, resp.text
            assert "database is locked" in srv.log(), srv.log()
        finally:
            db.execute("ROLLBACK")
            db.close()
        assert http.get(f"{srv.http}/readyz").status_code == 200


# ------------------------------------------------------------------ the SSE closing line


def test_the_sse_closing_line_is_written_once(servers: Callable[..., Server]) -> None:
    """A stream busy with traffic when the server stops: exactly one ``: closed`` line."""
    srv = servers(TRANSPORT="sse")
    token = mint("u_closing01")
    with (
        sync_http(10) as http,
        http.stream(
            "GET", f"{srv.http}/api/chat-stream", headers={"Authorization": f"Bearer {token}"}
        ) as stream,
    ):
        for i in range(20):
            http.post(
                f"{srv.http}/api/chat-message",
                json={"text": f"m{i}"},
                headers=bearer("u_closing02"),
            )
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(httpx.HTTPError):
            body = stream.read()
    assert body.count(b": closed") == 1, body[-400:]


# ------------------------------------------------------------------ invalid UTF-8


def test_invalid_utf8_closes_1007_without_an_error_log(srv: Server) -> None:
    """Found by the fuzzer: uvicorn closed 1007 but logged an ERROR with a traceback first."""
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(
                b"GET /api/chat.ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")
            sock.sendall(frame_bytes(True, 0, 1, b"\xff\xfe", True, 2))
            got = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    got += chunk
            assert got.startswith(b"\x88") and got[2:4] == (1007).to_bytes(2, "big"), got
    assert "Invalid UTF-8" not in srv.log() and "Traceback" not in srv.log(), srv.log()
