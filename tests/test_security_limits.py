"""Closing the doors (issue 9): origins, per-IP sessions, connection caps, sizes, headers.

Three servers, started side by side:

- ``plain``: defaults. The ``Origin`` must match ``Host`` (same-origin browsers), or be absent
  (non-browser clients).
- ``listed``: ``ALLOWED_ORIGINS=http://good.example,https://app.example``.
- ``capped``: ``MAX_CONNECTIONS=4``, ``MAX_USER_CONNECTIONS=2``, three sessions per IP
  (``SESSION_BURST=3``, ``SESSION_RATE`` so slow it never refills during the test) and
  ``MAX_MESSAGE_BYTES=4096``. Its users get tokens minted with the test secret, so the
  session budget is spent only by the test about it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from support.clients import (
    POST_ENDPOINTS,
    Session,
    SseClient,
    WsClient,
    aio,
    asession,
    async_http,
    build_server,
    post,
    start_all,
    uniq,
)
from support.server import Server
from test_ops_support import CODES, ascrape, await_metric, delta, mint, no_stack_trace, value
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

EVIL = "http://evil.example"
GOOD = "http://good.example"
MAX_BYTES = 4096


@dataclass
class Servers:
    plain: Server
    listed: Server
    capped: Server


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    plain = build_server(tmp_path_factory.mktemp("plain"), {})
    listed = build_server(
        tmp_path_factory.mktemp("listed"), {"ALLOWED_ORIGINS": f"{GOOD},https://app.example"}
    )
    capped = build_server(
        tmp_path_factory.mktemp("capped"),
        {
            "MAX_CONNECTIONS": "4",
            "MAX_USER_CONNECTIONS": "2",
            "SESSION_RATE": "0.001",
            "SESSION_BURST": "3",
            "MAX_MESSAGE_BYTES": str(MAX_BYTES),
            # the tests' own address is the operator's listed proxy here (issue 14:
            # forwarded headers are trusted only from listed addresses)
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
        },
    )
    all_ = [plain, listed, capped]
    try:
        start_all(all_)
        yield Servers(plain, listed, capped)
    finally:
        for srv in all_:
            srv.stop(timeout=5)


def minted(name: str | None = None) -> Session:
    """A user of the capped server who never spent one of its per-IP sessions."""
    user_id = uniq("u")
    name = name or uniq()
    return Session(user_id, name, mint(user_id, name), "ws", {})


SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "chat": {"text": "cross-site", "clientId": "c-x"},
    "typing": {"isTyping": True},
    "webrtc-signal": {"to": "p_nobody", "signal": {"type": "bye"}},
    "media-state": {"camera": True},
    "bot-toggle": {"bot": "sol", "enabled": True},
    "clear": {},
    "ai-request": {"prompt": "hi"},
    "ready": {},
    "call-outcome": {"peerId": "p_nobody", "outcome": "failed"},
    "delivery-report": {"sendToAckMs": [12]},
    "presence-page": {"cursor": "u_0"},
}
ALL_POSTS = [*POST_ENDPOINTS.values(), "/api/screen-share-signal"]


def body_for(endpoint: str) -> dict[str, Any]:
    kind = {v: k for k, v in POST_ENDPOINTS.items()}.get(endpoint, "webrtc-signal")
    return SAMPLE_BODIES[kind]


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, (resp.request.url, resp.status_code, resp.text)
    body = resp.json()
    assert body["code"] == code and isinstance(body["message"], str), body
    assert no_stack_trace(resp.text)


async def ws_handshake_status(url: str, origin: str) -> int:
    """The HTTP status of a WebSocket handshake from ``origin`` (101 when it upgrades)."""
    try:
        ws = await connect(url, origin=origin, proxy=None, open_timeout=5)  # type: ignore[arg-type]
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


# ------------------------------------------------------------------ origin (CSRF)


@aio
async def test_cross_origin_posts_are_refused_403(servers: Servers) -> None:
    srv = servers.plain
    user = await asession(srv.http)
    tab = await SseClient.open(srv, user)
    before = await ascrape(srv)
    for origin in (EVIL, "null", f"http://127.0.0.1:{srv.port}.evil.example"):
        for endpoint in ALL_POSTS:
            resp = await tab.post(endpoint, body_for(endpoint), headers={"Origin": origin})
            assert_error(resp, 403, "forbidden")
        async with async_http(srv.http) as http:
            resp = await http.post(
                "/api/session", json={"userName": "x"}, headers={"Origin": origin}
            )
            assert_error(resp, 403, "forbidden")
    after = await ascrape(srv)
    assert delta(before, after, "lastra_messages_in_total", type="chat", transport="sse") == 0
    assert delta(before, after, "lastra_sessions_created_total") == 0
    assert not tab.seen("chat", lambda d: d["text"] == "cross-site")
    # the same requests from the page's own origin work
    own = {"Origin": f"http://127.0.0.1:{srv.port}"}
    resp = await tab.post(
        "/api/chat-message", {"text": "same-origin", "clientId": uniq()}, headers=own
    )
    assert resp.status_code == 200, resp.text


@aio
async def test_cross_origin_streams_and_websocket_handshakes_are_refused(servers: Servers) -> None:
    srv = servers.plain
    user = await asession(srv.http)
    before = await ascrape(srv)
    assert await ws_handshake_status(srv.ws, EVIL) == 403
    assert await ws_handshake_status(srv.ws, "null") == 403
    stream = await SseClient.connect(srv.http, user, headers={"Origin": EVIL})
    assert stream.status == 403 and stream.body["code"] == "forbidden"
    after = await ascrape(srv)
    assert delta(before, after, "lastra_connections_refused_total", reason="origin") == 2
    # same origin (what the bundled page sends) and no Origin (a native client) still work
    assert await ws_handshake_status(srv.ws, f"http://127.0.0.1:{srv.port}") == 101
    tab = await WsClient.open(srv, user)
    assert tab.ready["userId"] == user.userId


@aio
async def test_allowed_origins_admit_listed_origins_only(servers: Servers) -> None:
    srv = servers.listed
    async with async_http(srv.http) as http:
        resp = await http.post("/api/session", json={"userName": "Gus"}, headers={"Origin": GOOD})
        assert resp.status_code == 200, resp.text
        user = Session(
            **{k: resp.json()[k] for k in ("userId", "userName", "token", "transport")}, raw={}
        )
        resp = await http.post("/api/session", json={"userName": "Eve"}, headers={"Origin": EVIL})
        assert_error(resp, 403, "forbidden")
    # POSTs
    tab = await SseClient.open(srv, user, headers={"Origin": GOOD})
    resp = await tab.post(
        "/api/chat-message", {"text": "listed", "clientId": uniq()}, headers={"Origin": GOOD}
    )
    assert resp.status_code == 200, resp.text
    resp = await tab.post(
        "/api/chat-message", {"text": "evil", "clientId": uniq()}, headers={"Origin": EVIL}
    )
    assert_error(resp, 403, "forbidden")
    # streams and handshakes
    assert (await SseClient.connect(srv.http, user, headers={"Origin": EVIL})).status == 403
    assert await ws_handshake_status(srv.ws, GOOD) == 101
    assert await ws_handshake_status(srv.ws, "https://app.example") == 101
    assert await ws_handshake_status(srv.ws, EVIL) == 403
    ws = await connect(srv.ws, origin=GOOD, proxy=None)  # type: ignore[arg-type]
    try:
        await ws.send(json.dumps({"type": "auth", "data": {"token": user.token}}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert first["type"] == "ready"
    finally:
        await ws.close()
    # a client that sends no Origin at all (not a browser) is not a CSRF risk
    resp = await post(
        srv.http, "/api/chat-message", {"text": "native", "clientId": uniq()}, token=user.token
    )
    assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------ per-IP sessions


def test_session_creation_is_limited_per_ip(servers: Servers) -> None:
    srv = servers.capped
    with httpx.Client(timeout=5, trust_env=False) as http:
        url = f"{srv.http}/api/session"
        statuses = [http.post(url, json={"userName": uniq()}).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = http.post(url, json={"userName": uniq()})
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) > 0
        # a token refresh is a session too: same budget
        token = mint(uniq("u"), "Ada")
        again = http.post(
            url, json={"userName": "Ada"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert again.status_code == 429
        # another client address (behind the trusted local proxy) has its own budget
        other = http.post(
            url, json={"userName": uniq()}, headers={"X-Forwarded-For": "203.0.113.7"}
        )
        assert other.status_code == 200, other.text


# ------------------------------------------------------------------ connection caps


async def wait_idle(srv: Server) -> None:
    await await_metric(
        srv,
        lambda s: (
            value(s, "lastra_connections_open", transport="ws")
            + value(s, "lastra_connections_open", transport="sse")
            == 0
        ),
        "every connection detached",
    )


@aio
async def test_max_user_connections_refuses_the_extra_tab(servers: Servers) -> None:
    srv = servers.capped
    await wait_idle(srv)
    ada = minted("Ada")
    first = await WsClient.open(srv, ada)
    second = await SseClient.open(srv, ada)
    before = await ascrape(srv)

    third = await WsClient.connect(srv.ws, ada)
    await third.auth(ada.token, settle=False)
    assert await third.wait_closed() == (1013, "too-many-connections")
    assert third.seen("ready") == []
    fourth = await SseClient.connect(srv.http, ada)
    assert fourth.status == 503, fourth.body
    assert fourth.body["code"] == "rate_limited" and int(fourth.headers["retry-after"]) > 0

    # someone else is not affected
    bea = await WsClient.open(srv, minted("Bea"))
    assert (await bea.chat("room for me")).ok
    after = await ascrape(srv)
    assert (
        delta(before, after, "lastra_connections_refused_total", reason="too-many-connections") == 2
    )

    # closing one of Ada's tabs makes room for another
    await first.close()
    await await_metric(
        srv, lambda s: value(s, "lastra_connections_open", transport="ws") == 1, "the tab closed"
    )
    replacement = await WsClient.open(srv, ada)
    assert replacement.ready["userId"] == ada.userId
    for client in (second, bea, replacement):
        await client.close()


@aio
async def test_max_connections_refuses_cleanly_when_full(servers: Servers) -> None:
    srv = servers.capped
    await wait_idle(srv)
    tabs = [
        await WsClient.open(srv, minted()),
        await WsClient.open(srv, minted()),
        await SseClient.open(srv, minted()),
        await SseClient.open(srv, minted()),
    ]
    before = await ascrape(srv)
    late = minted("Late")
    ws = await WsClient.connect(srv.ws, late)
    await ws.auth(late.token, settle=False)
    assert await ws.wait_closed() == (1013, "server-full")
    sse = await SseClient.connect(srv.http, late)
    assert sse.status == 503 and sse.body["code"] == "rate_limited", sse.body
    assert "retry-after" in sse.headers
    after = await ascrape(srv)
    assert delta(before, after, "lastra_connections_refused_total", reason="server-full") == 2
    # the ones inside carry on
    assert (await tabs[0].chat("still here")).ok
    await tabs[3].expect("chat", lambda d: d["text"] == "still here")
    for tab in tabs:
        await tab.close()


@aio
async def test_concurrent_sse_opens_cannot_exceed_the_caps(servers: Servers) -> None:
    """Six tabs of one user open their streams at the same moment: at most two may stay.

    The six sockets are connected first, then every request is written in one go, so the
    server reads them together, as it would a burst of reconnects after a restart.
    """
    srv = servers.capped
    await wait_idle(srv)
    ada = minted("Ada")
    socks = [await asyncio.open_connection("127.0.0.1", srv.port) for _ in range(6)]
    request = (
        f"GET /api/chat-stream HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        f"Authorization: Bearer {ada.token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    try:
        for _, writer in socks:
            writer.write(request)
        await asyncio.gather(*(writer.drain() for _, writer in socks))
        statuses = [
            (await asyncio.wait_for(reader.readline(), 5)).split()[1] for reader, _ in socks
        ]
        accepted = statuses.count(b"200")
        assert accepted <= 2, f"{accepted} SSE streams for one user (cap 2): {statuses}"
    finally:
        for _, writer in socks:
            writer.close()
        await wait_idle(srv)


# ------------------------------------------------------------------ sizes


@aio
async def test_oversize_post_bodies_are_413(servers: Servers) -> None:
    srv = servers.capped
    user = minted()
    for endpoint in ALL_POSTS:
        body = {**body_for(endpoint), "padding": "x" * (MAX_BYTES + 10)}
        resp = await post(srv.http, endpoint, body, token=user.token)
        assert_error(resp, 413, "too_large")

    # no Content-Length (chunked): the limit holds while streaming
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(64):
            yield b"y" * 1024
        yield b'"}'

    async with async_http(srv.http) as http:
        resp = await http.post(
            "/api/chat-message",
            content=chunks(),
            headers={"Authorization": f"Bearer {user.token}", "Content-Type": "application/json"},
        )
        assert_error(resp, 413, "too_large")
    # (on the plain server: the capped one's per-IP session budget is checked first)
    async with async_http(servers.plain.http) as http:
        resp = await http.post("/api/session", content=b'{"userName": "' + b"z" * 5000 + b'"}')
        assert_error(resp, 413, "too_large")


async def declared_huge_post(port: int, path: str, token: str | None) -> bytes | None:
    """Declare a 100 MB body, send 20 bytes, and read the status line (None after 2 s)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        '{"userName": "aaaaa'.encode()
    )
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), 2)
    except TimeoutError:
        return None
    finally:
        writer.close()
        await writer.wait_closed()


@aio
async def test_a_declared_oversize_post_is_refused_before_it_is_read(servers: Servers) -> None:
    srv = servers.capped
    line = await declared_huge_post(srv.port, "/api/chat-message", minted().token)
    assert line is not None and b" 413 " in line, line


@aio
async def test_a_declared_oversize_session_post_is_refused_before_it_is_read(
    servers: Servers,
) -> None:
    srv = servers.plain  # the capped server's session budget is spent by now
    line = await declared_huge_post(srv.port, "/api/session", None)
    assert line is not None and b" 413 " in line, line


@aio
async def test_oversize_websocket_frame_closes_1009(servers: Servers) -> None:
    srv = servers.capped
    await wait_idle(srv)
    client = await WsClient.open(srv, minted())
    await client.send_raw(json.dumps({"type": "chat", "data": {"text": "w" * (MAX_BYTES + 1)}}))
    code, _ = await client.wait_closed()
    assert code == 1009


# ------------------------------------------------------------------ headers, errors


def test_security_headers_on_every_kind_of_response(servers: Servers) -> None:
    srv = servers.plain
    with httpx.Client(timeout=5, trust_env=False) as http:
        responses = {
            "/": http.get(f"{srv.http}/"),
            "/admin": http.get(f"{srv.http}/admin"),
            "/app.js": http.get(f"{srv.http}/app.js"),
            "/healthz": http.get(f"{srv.http}/healthz"),
            "404": http.get(f"{srv.http}/no-such-page"),
            "401": http.get(f"{srv.http}/api/chat-stream"),
            # last: it sets the session cookie, which would open the stream above
            "POST /api/session": http.post(f"{srv.http}/api/session", json={"userName": "H"}),
        }
    for what, resp in responses.items():
        h = resp.headers
        csp = h.get("content-security-policy", "")
        assert csp, f"{what}: no CSP"
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, f"{what}: {csp}"
        assert directives["script-src"] == ["'self'"], csp
        assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == [
            "'none'"
        ]
        assert "default-src" in directives and "base-uri" in directives
        assert h.get("x-content-type-options") == "nosniff", what
        assert h.get("x-frame-options") == "DENY", what
        assert h.get("referrer-policy") == "no-referrer", what
        assert h.get("cross-origin-opener-policy") == "same-origin", what
        assert "camera=(self)" in h.get("permissions-policy", ""), what
    assert responses["/"].status_code == 200


def test_error_responses_carry_no_stack_traces(servers: Servers) -> None:
    srv = servers.plain
    token = mint(uniq("u"), "T")
    auth = {"Authorization": f"Bearer {token}"}
    json_ct = {"Content-Type": "application/json"}
    with httpx.Client(base_url=srv.http, timeout=5, trust_env=False) as http:
        cases = [
            http.get("/no-such-page"),
            http.put("/api/chat-message"),
            http.post("/healthz"),
            http.post("/api/session", content=b"{", headers=json_ct),
            http.post("/api/session", content=b"[1,2]", headers=json_ct),
            http.post("/api/session", json={"userName": "\x00"}),
            http.post("/api/session", content=b"\xff\xfe", headers=json_ct),
            http.post("/api/chat-message", content=b"{", headers={**auth, **json_ct}),
            http.post("/api/chat-message", content=b"1e999999", headers={**auth, **json_ct}),
            http.post("/api/chat-message", content=b"[" * 5000, headers={**auth, **json_ct}),
            http.post("/api/chat-message", json={"text": ["no"]}, headers=auth),
            http.post("/api/chat-signal", json={"to": "p_x", "signal": []}, headers=auth),
            http.post(
                "/api/media-state",
                json={"camera": True},
                headers={**auth, "X-Lastra-Peer": "p_nobody"},
            ),
            http.post("/api/chat-message", json={"text": "x"}),
            http.get("/api/transport", headers={"Authorization": "Bearer a.b.c"}),
            http.get("/api/chat-stream", params={"token": "a.b.c"}),
            http.get("/api/admin/stats", headers={"Authorization": "Bearer guess"}),
            http.get("/api/chat.ws"),  # a plain GET to the WebSocket route
        ]
    for resp in cases:
        assert 400 <= resp.status_code < 500, (
            resp.request.method,
            resp.request.url,
            resp.status_code,
            resp.text,
        )
        assert no_stack_trace(resp.text), resp.text
        body = resp.json()
        assert set(body) >= {"code", "message"} and body["code"] in CODES, body
        assert body["code"] != "internal" and "detail" not in body, body
