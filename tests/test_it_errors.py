"""Error codes of PROTOCOL §8 on both transports; bad input never kills the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from support.clients import (
    POST_ENDPOINTS,
    SseClient,
    WsClient,
    aio,
    asession,
    async_http,
    open_peer,
    uniq,
    user_entry,
)
from support.server import Server


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


HTTP_STATUS = {
    "bad_json": 400,
    "unknown_type": 400,
    "invalid": 422,
    "too_large": 413,
    "rate_limited": 429,
    "not_authenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "ai_unavailable": 503,
}


async def newcomer(srv: Server, transport: str) -> Any:
    return await open_peer(transport, srv, await asession(srv.http))


async def still_serving(srv: Server) -> None:
    """A fresh user on each transport can still chat, and the other one sees it."""
    ws = await newcomer(srv, "ws")
    sse = await newcomer(srv, "sse")
    for sender, other in ((ws, sse), (sse, ws)):
        cid = uniq("alive")
        reply = await sender.chat("still alive", cid)
        assert reply.ok, reply
        await other.expect("chat", lambda d, cid=cid: d.get("clientId") == cid)
    await ws.close()
    await sse.close()


async def ping_works(client: WsClient) -> None:
    t = uniq("t")
    await client.send("ping", {"t": t})
    await client.expect("pong", lambda d: d.get("t") == t)


# ------------------------------------------------------------------ invalid


INVALID = [
    ("chat", {"text": "   ", "clientId": "c"}),
    ("chat", {"text": "", "clientId": "c"}),
    ("chat", {"text": 123, "clientId": "c"}),
    ("chat", {"clientId": "c"}),
    ("chat", {"text": "hi", "clientId": "x" * 65}),
    ("chat", {"text": "hi", "clientId": 7}),
    ("typing", {"isTyping": "yes"}),
    ("typing", {}),
    ("webrtc-signal", {"to": "p", "signal": {"type": "hello"}}),
    ("webrtc-signal", {"signal": {"type": "offer", "sdp": "x"}}),
    ("webrtc-signal", {"to": "p", "signal": "offer"}),
    ("webrtc-signal", {"to": "p", "signal": {"type": "offer"}, "stream": "cinema"}),
    ("media-state", {"camera": "on", "mic": False, "screen": False}),
    ("media-state", {}),
    ("bot-toggle", {"bot": "sol"}),
    ("bot-toggle", {"bot": "sol", "enabled": "yes"}),
    ("ai-request", {}),
    ("ai-request", {"prompt": 5}),
]


@pytest.mark.parametrize(
    ("type_", "data"), INVALID, ids=[f"{t}-{i}" for i, (t, _) in enumerate(INVALID)]
)
@aio
async def test_invalid_data_is_an_invalid_error(
    srv: Server, transport: str, type_: str, data: dict[str, Any]
) -> None:
    client = await newcomer(srv, transport)
    reply = await client.request(type_, data)
    assert reply.code == "invalid", reply
    assert isinstance(reply.data.get("message"), str)
    assert reply.data.get("ref"), "the error answers the message's ref"
    if transport == "sse":
        assert reply.status == 422
        assert "detail" not in reply.data
    else:
        await ping_works(client)


@aio
async def test_data_that_is_not_an_object_is_invalid(srv: Server, transport: str) -> None:
    client = await newcomer(srv, transport)
    if transport == "ws":
        await client.send_raw(json.dumps({"type": "chat", "data": "hello", "ref": "r1"}))
        env = await client.expect("error")
        assert env["data"]["code"] == "invalid", env
        assert env["data"].get("ref") == "r1"
        await ping_works(client)
    else:
        resp = await client.post("/api/chat-message", ["hello"])
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == "invalid"


@aio
async def test_overlong_ref_is_invalid(srv: Server) -> None:
    client = await newcomer(srv, "ws")
    await client.send("chat", {"text": "hi", "clientId": uniq()}, ref="r" * 65)
    env = await client.expect("error")
    assert env["data"]["code"] == "invalid", env
    await ping_works(client)


@aio
async def test_text_of_4000_characters_is_accepted(srv: Server, transport: str) -> None:
    client = await newcomer(srv, transport)
    reply = await client.chat("  " + "y" * 4000 + "  ")
    assert reply.ok, reply


# ------------------------------------------------------------------ too_large


@aio
async def test_text_over_4000_characters_is_too_large(srv: Server, transport: str) -> None:
    client = await newcomer(srv, transport)
    reply = await client.chat("z" * 4001)
    assert reply.code == "too_large", reply
    assert reply.data.get("ref")
    if transport == "sse":
        assert reply.status == 413
    else:
        await ping_works(client)


@aio
async def test_post_body_over_max_message_bytes_is_413(srv: Server) -> None:
    client = await newcomer(srv, "sse")
    body = json.dumps({"text": "x" * 70_000, "clientId": "big"})
    resp = await client.post("/api/chat-message", body)
    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == "too_large"
    assert "detail" not in resp.json()


# ------------------------------------------------------------------ bad_json, unknown_type


@aio
async def test_bad_json(srv: Server, transport: str) -> None:
    client = await newcomer(srv, transport)
    if transport == "ws":
        await client.send_raw("{this is not json")
        env = await client.expect("error")
        assert env["data"]["code"] == "bad_json", env
        assert isinstance(env["data"]["message"], str)
        await ping_works(client)
    else:
        resp = await client.post("/api/chat-message", "{this is not json")
        assert resp.status_code == 400, resp.text
        assert resp.json()["code"] == "bad_json"
        assert isinstance(resp.json()["message"], str)
    assert (await client.chat("after bad json")).ok


@aio
async def test_unknown_type(srv: Server) -> None:
    client = await newcomer(srv, "ws")
    await client.send("teleport", {"to": "mars"}, ref="r-unknown")
    env = await client.expect("error")
    assert env["data"]["code"] == "unknown_type", env
    assert env["data"]["ref"] == "r-unknown"
    await ping_works(client)


@aio
async def test_server_only_types_from_a_client_are_refused(srv: Server) -> None:
    client = await newcomer(srv, "ws")
    for type_ in ("presence", "history", "ack"):
        await client.send(type_, {}, ref=f"r-{type_}")
        env = await client.expect("error", lambda d, t=type_: d.get("ref") == f"r-{t}")
        assert env["data"]["code"] in ("unknown_type", "invalid"), env
    await ping_works(client)


# ------------------------------------------------------------------ forbidden, not_found (SSE)


@aio
async def test_post_as_another_users_peer_is_forbidden(srv: Server) -> None:
    victim = await newcomer(srv, "ws")
    mallory = await newcomer(srv, "sse")
    resp = await mallory.post(
        "/api/media-state", {"camera": True, "mic": True, "screen": True}, peer_id=victim.peer_id
    )
    assert resp.status_code == 403, resp.text
    assert resp.json()["code"] == "forbidden"
    assert "detail" not in resp.json()
    later = await newcomer(srv, "ws")
    entry = user_entry(later.presence["users"], victim.user.userId)
    assert entry is not None
    assert entry["peers"][0]["media"] == {"camera": False, "mic": False, "screen": False}


@aio
async def test_post_with_unknown_peer_is_not_found(srv: Server) -> None:
    client = await newcomer(srv, "sse")
    resp = await client.post(
        "/api/media-state", {"camera": True, "mic": False, "screen": False}, peer_id="no-such-peer"
    )
    assert resp.status_code == 404, resp.text
    assert resp.json()["code"] == "not_found"


@aio
async def test_post_chat_without_an_open_stream_is_stored_and_broadcast(srv: Server) -> None:
    obs = await newcomer(srv, "ws")
    user = await asession(srv.http)
    cid = uniq("nostream")
    async with async_http(srv.http) as http:
        resp = await http.post(
            POST_ENDPOINTS["chat"],
            json={"text": "from nowhere", "clientId": cid},
            headers=user.bearer,
        )
    assert resp.status_code == 200, resp.text
    ack = resp.json()
    assert ack["clientId"] == cid and isinstance(ack["seq"], int)
    env = await obs.expect("chat", lambda d: d.get("clientId") == cid)
    assert env["data"]["userId"] == user.userId
    assert env["data"]["id"] == ack["id"]


# ------------------------------------------------------------------ rate_limited


@aio
async def test_ws_flood_is_rate_limited_and_the_server_keeps_serving(srv: Server) -> None:
    flooder = await newcomer(srv, "ws")
    refs = [uniq("flood") for _ in range(60)]
    for ref in refs:
        await flooder.send("chat", {"text": "flood", "clientId": ref}, ref=ref)
    answers: dict[str, dict[str, Any]] = {}
    for ref in refs:
        answers[ref] = await first_of(flooder, ref)
    codes = [a["data"].get("code") for a in answers.values() if a["type"] == "error"]
    acks = [a for a in answers.values() if a["type"] == "ack"]
    assert "rate_limited" in codes, codes
    assert set(codes) == {"rate_limited"}, codes
    assert len(acks) >= 10, "the burst allowance lets the first messages through"
    await ping_works(flooder)  # connection kept open
    await still_serving(srv)
    await recovers(flooder)


async def first_of(client: WsClient, ref: str) -> dict[str, Any]:
    """The ack or error answering ``ref``."""
    env = await client.expect_any(("ack", "error"), lambda d: d.get("ref") == ref)
    assert env is not None
    return env


async def recovers(client: Any, timeout: float = 6.0) -> None:
    """After the bucket refills the same user can chat again (retry until acked)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply = await client.chat("after the flood")
        if reply.ok:
            return
        assert reply.code == "rate_limited", reply
        assert loop.time() < deadline, "never recovered from rate limiting"
        await asyncio.sleep(0.25)  # pacing a retry, not waiting for an event


@aio
async def test_sse_flood_is_429_and_the_server_keeps_serving(srv: Server) -> None:
    flooder: SseClient = await newcomer(srv, "sse")
    replies = await asyncio.gather(
        *(flooder.request("chat", {"text": "flood", "clientId": uniq()}) for _ in range(60))
    )
    limited = [r for r in replies if not r.ok]
    assert limited, "60 chats at once were all accepted"
    for reply in limited:
        assert reply.status == 429, reply
        assert reply.code == "rate_limited"
        assert isinstance(reply.data.get("message"), str)
        assert "detail" not in reply.data
    assert sum(r.ok for r in replies) >= 10
    await still_serving(srv)
    await recovers(flooder)


# ------------------------------------------------------------------ garbage


GARBAGE: list[tuple[str, set[str]]] = [
    ("not json at all", {"bad_json"}),
    ("{", {"bad_json"}),
    ("", {"bad_json"}),
    ("null", {"invalid", "bad_json"}),
    ("[]", {"invalid", "bad_json"}),
    ("42", {"invalid", "bad_json"}),
    ('"chat"', {"invalid", "bad_json"}),
    ('{"type": 5, "data": {}}', {"invalid", "unknown_type"}),
    ('{"data": {}}', {"invalid", "unknown_type"}),
    ('{"type": "chat", "data": null}', {"invalid"}),
    ('{"type": "chat"}', {"invalid"}),
    ('{"type": "chat", "data": {"text": "hi", "clientId": "x"}, "ref": {"a": 1}}', {"invalid"}),
    ('{"type": "typing", "data": {"isTyping": true}, "ref": 12}', {"invalid"}),
    ("[" * 20_000 + "]" * 20_000, {"invalid", "bad_json"}),
    ('{"a":' * 5_000 + "1" + "}" * 5_000, {"invalid", "bad_json", "unknown_type"}),
]


@aio
async def test_garbage_frames_get_errors_and_the_connection_lives(srv: Server) -> None:
    client = await newcomer(srv, "ws")
    for frame, codes in GARBAGE:
        await client.send_raw(frame)
        env = await client.expect("error")
        assert env["data"]["code"] in codes, (frame[:60], env)
    await ping_works(client)
    assert (await client.chat("after the garbage")).ok
    await still_serving(srv)


@aio
async def test_weird_but_valid_text_never_breaks_the_broadcast(srv: Server) -> None:
    obs = await newcomer(srv, "sse")
    client = await newcomer(srv, "ws")
    for text in ("\u0000 nul inside", "emoji \U0001f600 and \u202e bidi", "</script><b>x</b>"):
        cid = uniq()
        reply = await client.chat(text, cid)
        if reply.ok:
            env = await obs.expect("chat", lambda d, cid=cid: d.get("clientId") == cid)
            assert env["data"]["text"] == text.strip()
        else:
            assert reply.code == "invalid", reply
    # a lone surrogate: either refused or stored, but the server goes on
    await client.send_raw('{"type":"chat","data":{"text":"\\ud800","clientId":"sur"},"ref":"s"}')
    env = await client.expect_any(
        ("ack", "error"), lambda d: d.get("ref") == "s" or d.get("code") == "bad_json"
    )
    assert env is not None
    assert env["type"] == "ack" or env["data"]["code"] in ("invalid", "bad_json"), env
    # a number out of float range: valid JSON syntax; a pong or an error, then life goes on
    await client.send_raw('{"type": "ping", "data": {"t": 1e999999}, "ref": "inf"}')
    await client.expect_any(("pong", "error"))
    await ping_works(client)
    await still_serving(srv)


@aio
async def test_binary_frame_does_not_kill_the_server(srv: Server) -> None:
    client = await newcomer(srv, "ws")
    await client.send_raw(b"\x00\x01\x02 binary")
    # "text frames only": an error or a close are both fine; the server must live on
    await client.expect_any(("error",), timeout=3, or_closed=True)
    await still_serving(srv)


@aio
async def test_garbage_posts_never_kill_the_server(srv: Server) -> None:
    client = await newcomer(srv, "sse")
    bodies: list[str | bytes] = [
        b"\xff\xfe\x00garbage",
        "null",
        "[" * 20_000 + "]" * 20_000,
        '{"text": 1e999999, "clientId": "x"}',
    ]
    for endpoint in POST_ENDPOINTS.values():
        for body in bodies:
            resp = await client.post(endpoint, body)
            assert 400 <= resp.status_code < 500, (endpoint, resp.status_code, resp.text)
            assert resp.json()["code"] in ("bad_json", "invalid"), (endpoint, resp.text)
    resp = await client.post(
        "/api/chat-message",
        "text=hi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= resp.status_code < 500
    await still_serving(srv)


@aio
async def test_raw_tcp_garbage_never_kills_the_server(srv: Server) -> None:
    payloads = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
        b"GARBAGE / HTTP/9.9\r\n\r\n",
        b"GET /api/chat.ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: nope\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"POST /api/chat-message HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
        b"GET /api/chat-stream HTTP/1.1\r\n",  # half a request, then gone
    ]
    for payload in payloads:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        # the server answers or hangs up; either way it must not take long
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    async with async_http() as http:
        assert (await http.get(f"{srv.http}/healthz")).status_code == 200
    await still_serving(srv)
