"""WebSocket close codes (PROTOCOL §3, §8): 4401, 4408, 1009, and what stays alive."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from support.clients import WsClient, aio, asession, uniq
from support.server import Server

AUTH_TIMEOUT = 1.0
HEARTBEAT_TIMEOUT = 1.0


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "AUTH_TIMEOUT": str(AUTH_TIMEOUT),
    "HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
    "HEARTBEAT_INTERVAL": "0.3",
}


async def chat_still_works(srv: Server) -> None:
    client = await WsClient.open(srv, await asession(srv.http))
    assert (await client.chat("still here")).ok
    await client.close()


# ------------------------------------------------------------------ 4401


@aio
async def test_first_frame_not_auth_closes_4401(srv: Server) -> None:
    user = await asession(srv.http)
    client = await WsClient.connect(srv.ws, user)
    await client.send("chat", {"text": "let me in", "clientId": "c"})
    code, _ = await client.wait_closed()
    assert code == 4401
    assert client.seen("ready") == []
    assert client.seen("chat") == []
    await chat_still_works(srv)


@aio
async def test_garbage_first_frame_closes_4401(srv: Server) -> None:
    client = await WsClient.connect(srv.ws)
    await client.send_raw("{garbage")
    code, _ = await client.wait_closed()
    assert code == 4401
    assert client.seen("ready") == []


def bad_token(srv: Server, kind: str, user_id: str, good: str) -> object:
    now = int(time.time())
    claims = {"sub": user_id, "name": "Mallory", "iat": now, "exp": now + 3600}
    secret = srv.env["LASTRA_SECRET"]
    head, payload, sig = good.split(".")
    return {
        "garbage": "not-a-token",
        "empty": "",
        "number": 12345,
        "null": None,
        "other-secret": jwt.encode(claims, "another-secret-entirely-0123456789", "HS256"),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, secret, "HS256"),
        "tampered": f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
    }[kind]


@pytest.mark.parametrize(
    "kind",
    ["garbage", "empty", "number", "null", "other-secret", "alg-none", "expired", "tampered"],
)
@aio
async def test_bad_token_closes_4401(srv: Server, kind: str) -> None:
    user = await asession(srv.http)
    client = await WsClient.connect(srv.ws, user)
    await client.send("auth", {"token": bad_token(srv, kind, user.userId, user.token)})
    code, _ = await client.wait_closed()
    assert code == 4401
    assert client.seen("ready") == []


@aio
async def test_auth_without_token_closes_4401(srv: Server) -> None:
    client = await WsClient.connect(srv.ws)
    await client.send("auth", {})
    code, _ = await client.wait_closed()
    assert code == 4401


@aio
async def test_no_auth_within_auth_timeout_closes_4401(srv: Server) -> None:
    loop = asyncio.get_running_loop()
    client = await WsClient.connect(srv.ws)
    opened = loop.time()
    code, _ = await client.wait_closed(timeout=AUTH_TIMEOUT + 3)
    elapsed = loop.time() - opened
    assert code == 4401
    assert elapsed >= AUTH_TIMEOUT - 0.3, f"closed after {elapsed:.2f}s, before AUTH_TIMEOUT"
    await chat_still_works(srv)


# ------------------------------------------------------------------ 4408


@aio
async def test_silent_client_is_closed_4408_while_active_ones_stay(srv: Server) -> None:
    loop = asyncio.get_running_loop()
    silent = await WsClient.open(srv, await asession(srv.http))
    authed = loop.time()
    pinger = await WsClient.open(srv, await asession(srv.http))
    typist = await WsClient.open(srv, await asession(srv.http))
    assert pinger.ready["heartbeatInterval"] == pytest.approx(0.3)

    async def keep_alive(client: WsClient, pinging: bool) -> None:
        """Send a frame every 0.3 s for 2 x HEARTBEAT_TIMEOUT, each one answered."""
        until = loop.time() + 2 * HEARTBEAT_TIMEOUT
        while loop.time() < until:
            if pinging:
                t = uniq("t")
                await client.send("ping", {"t": t})
                await client.expect("pong", lambda d, t=t: d.get("t") == t)
            else:  # any frame counts, not just ping
                assert (await client.request("typing", {"isTyping": True})).ok
            await asyncio.sleep(0.3)  # pacing the heartbeat, not waiting for an event

    async def silent_closed() -> float:
        code, reason = await silent.wait_closed(timeout=HEARTBEAT_TIMEOUT + 3)
        assert code == 4408, (code, reason)
        return loop.time() - authed

    elapsed, _, _ = await asyncio.gather(
        silent_closed(), keep_alive(pinger, True), keep_alive(typist, False)
    )
    assert elapsed >= HEARTBEAT_TIMEOUT - 0.3, f"closed after {elapsed:.2f}s"
    for client in (pinger, typist):
        assert not client.closed.is_set()
        assert (await client.chat("kept alive")).ok


# ------------------------------------------------------------------ 1009


@aio
async def test_frame_over_max_message_bytes_closes_1009(srv: Server) -> None:
    client = await WsClient.open(srv, await asession(srv.http))
    frame = json.dumps({"type": "ping", "data": {"t": "x" * 70_000}})
    assert len(frame.encode()) > 65_536
    await client.send_raw(frame)
    code, _ = await client.wait_closed()
    assert code == 1009
    assert client.seen("pong") == []
    await chat_still_works(srv)


@aio
async def test_frame_under_max_message_bytes_is_served(srv: Server) -> None:
    client = await WsClient.open(srv, await asession(srv.http))
    t = uniq("t")
    # 60 000 bytes of JSON whitespace: a valid frame just under the 64 KiB limit
    frame = json.dumps({"type": "ping", "data": {"t": t}})[:-1] + " " * 60_000 + "}"
    await client.send_raw(frame)
    env = await client.expect("pong")
    assert env["data"]["t"] == t
    # and a full 4000-character chat of 2-byte characters
    assert (await client.chat("\u00e9" * 4000)).ok
    assert not client.closed.is_set()
