"""Tokens (issue 9): a forged, an expired and a cross-user token are refused on both transports.

- forged: a token for a real user, signed with another secret;
- expired: signed with the server's secret (the test knows it), ``exp`` in the past;
- cross-user: Ada's genuine token used to act on Bea's connection (``X-Lastra-Peer`` of
  Bea's peer), or a WebSocket frame that claims to come from Bea.

WebSocket refusals are ``4401`` after ``auth`` (and no ``ready``); SSE refusals are ``401``
on the stream and on every POST; acting on another user's peer is ``403 forbidden``.
Tokens carry an expiry (``LASTRA_TOKEN_TTL``) and are refreshed with ``POST /api/session``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from support.clients import (
    POST_ENDPOINTS,
    Session,
    SseClient,
    WsClient,
    aio,
    asession,
    async_http,
    post,
    uniq,
)
from support.server import Server
from test_ops_support import TEST_SECRET, mint

TOKEN_TTL = 600


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "TOKEN_TTL": str(TOKEN_TTL),
}


def bad_token(kind: str, victim: Session) -> str:
    if kind == "forged":
        return mint(victim.userId, victim.userName, secret="not-the-server-secret-0123456789abc")
    if kind == "expired":
        return mint(victim.userId, victim.userName, issued=time.time() - 7200, ttl=3600)
    raise AssertionError(kind)


SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "chat": {"text": "let me in", "clientId": "c-intruder"},
    "typing": {"isTyping": True},
    "webrtc-signal": {"to": "p_nobody", "signal": {"type": "bye"}},
    "media-state": {"camera": True},
    "bot-toggle": {"bot": "sol", "enabled": False},
    "clear": {},
    "ai-request": {"prompt": "hello"},
    "ready": {},
    "call-outcome": {"peerId": "p_nobody", "outcome": "failed"},
    "delivery-report": {"sendToAckMs": [12]},
    "presence-page": {"cursor": "u_0"},
}


@pytest.mark.parametrize("kind", ["forged", "expired"])
@aio
async def test_bad_token_is_refused_on_websocket_with_4401(srv: Server, kind: str) -> None:
    victim = await asession(srv.http)
    watcher = await WsClient.open(srv, await asession(srv.http))
    client = await WsClient.connect(srv.ws)
    await client.auth(bad_token(kind, victim), settle=False)
    code, _ = await client.wait_closed()
    assert code == 4401
    assert client.seen("ready") == [] and client.seen("history") == []
    # the victim never appeared in the room
    assert not [
        e
        for e in watcher.seen("presence-diff")
        if any(u["userId"] == victim.userId for u in e["data"]["upsert"])
    ]


@pytest.mark.parametrize("kind", ["forged", "expired"])
@aio
async def test_bad_token_is_refused_on_sse_with_401(srv: Server, kind: str) -> None:
    victim = await asession(srv.http)
    token = bad_token(kind, victim)
    as_victim = Session(victim.userId, victim.userName, token, "ws", {})
    for how in ({"bearer": True}, {"bearer": False, "params": {"token": token}}):
        stream = await SseClient.connect(srv.http, as_victim, **how)
        assert stream.status == 401, stream.body
        assert stream.body["code"] == "not_authenticated"
    stream = await SseClient.connect(srv.http, None, cookies={"lastra_token": token}, bearer=False)
    assert stream.status == 401
    for kind_, endpoint in POST_ENDPOINTS.items():
        resp = await post(srv.http, endpoint, SAMPLE_BODIES[kind_], token=token)
        assert resp.status_code == 401, (endpoint, resp.text)
        assert resp.json()["code"] == "not_authenticated"
    async with async_http(srv.http) as http:
        resp = await http.get("/api/transport", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401


@aio
async def test_another_users_peer_is_forbidden_over_post(srv: Server) -> None:
    ada = await asession(srv.http)
    bea = await asession(srv.http)
    cat = await asession(srv.http)
    bea_tab = await SseClient.open(srv, bea)
    cat_tab = await WsClient.open(srv, cat)
    ada_tab = await WsClient.open(srv, ada)
    signal = {"to": cat_tab.peer_id, "signal": {"type": "offer", "sdp": "v=0 forged"}}
    for endpoint, body in (
        ("/api/chat-signal", signal),
        ("/api/screen-share-signal", signal),
        ("/api/media-state", {"camera": True, "mic": True}),
        ("/api/chat-ready", {}),
    ):
        resp = await post(srv.http, endpoint, body, token=ada.token, peer_id=bea_tab.peer_id)
        assert resp.status_code == 403, (endpoint, resp.text)
        assert resp.json()["code"] == "forbidden"
    # Cat never got a signal "from Bea"; Bea's media state did not change.
    # a round trip on Cat's socket: a signal pushed during those POSTs would be before it
    assert (await cat_tab.request("typing", {"isTyping": False})).ok
    assert cat_tab.seen("webrtc-signal") == []
    for env in ada_tab.seen("presence-diff"):
        for user in env["data"]["upsert"]:
            if user["userId"] == bea.userId:
                assert not any(p["media"]["camera"] for p in user["peers"])
    # A chat with Bea's peer header is still Ada's chat, never Bea's.
    resp = await post(
        srv.http,
        "/api/chat-message",
        {"text": "who am I", "clientId": uniq("c")},
        token=ada.token,
        peer_id=bea_tab.peer_id,
    )
    if resp.status_code == 200:
        got = await bea_tab.expect("chat", lambda d: d["text"] == "who am I")
        assert got["data"]["userId"] == ada.userId and got["data"]["userName"] == ada.userName
    else:
        assert resp.status_code == 403, resp.text


@aio
async def test_a_websocket_cannot_signal_as_someone_else(srv: Server) -> None:
    ada = await asession(srv.http)
    bea = await asession(srv.http)
    cat = await asession(srv.http)
    ada_tab = await WsClient.open(srv, ada)
    bea_tab = await SseClient.open(srv, bea)
    cat_tab = await WsClient.open(srv, cat)
    forged = {
        "to": cat_tab.peer_id,
        "from": bea_tab.peer_id,
        "fromUser": {"userId": bea.userId, "userName": bea.userName},
        "signal": {"type": "offer", "sdp": "v=0", "from": bea_tab.peer_id},
    }
    assert (await ada_tab.request("webrtc-signal", forged)).ok
    got = await cat_tab.expect("webrtc-signal")
    assert got["data"]["from"] == ada_tab.peer_id
    assert got["data"]["fromUser"] == {"userId": ada.userId, "userName": ada.userName}
    assert "from" not in got["data"]["signal"]
    # and an "auth" with Bea's token on Ada's open connection does not switch identity
    again = await ada_tab.request("auth", {"token": bea.token})
    assert again.code == "invalid"
    assert (await ada_tab.chat("still Ada")).ok
    mine = await cat_tab.expect("chat", lambda d: d["text"] == "still Ada")
    assert mine["data"]["userId"] == ada.userId


def test_tokens_expire_after_token_ttl_and_are_refreshed(srv: Server) -> None:
    with httpx.Client(timeout=5, trust_env=False) as http:
        first = http.post(f"{srv.http}/api/session", json={"userName": "Ada"}).json()
        claims = jwt.decode(first["token"], TEST_SECRET, algorithms=["HS256"])
        assert claims["sub"] == first["userId"]
        assert claims["exp"] - claims["iat"] == TOKEN_TTL
        assert first["expiresIn"] == TOKEN_TTL

        # refresh: same user, a new token that expires no earlier
        bearer = {"Authorization": f"Bearer {first['token']}"}
        refreshed = http.post(f"{srv.http}/api/session", json={"userName": "Ada"}, headers=bearer)
        assert refreshed.status_code == 200
        again = refreshed.json()
        assert again["userId"] == first["userId"]
        new_claims = jwt.decode(again["token"], TEST_SECRET, algorithms=["HS256"])
        assert new_claims["exp"] >= claims["exp"]
        assert "lastra_token" in refreshed.cookies

        # an expired token cannot be refreshed into the same identity
        expired = mint(first["userId"], "Ada", issued=time.time() - 7200, ttl=3600)
        stale = http.post(
            f"{srv.http}/api/session",
            json={"userName": "Ada"},
            headers={"Authorization": f"Bearer {expired}"},
        )
        assert stale.status_code == 200
        assert stale.json()["userId"] != first["userId"]


def test_session_cookie_is_http_only_and_same_site_strict(srv: Server) -> None:
    with httpx.Client(timeout=5, trust_env=False) as http:
        resp = http.post(f"{srv.http}/api/session", json={"userName": "Ada"})
    cookie = resp.headers["set-cookie"]
    lowered = cookie.lower()
    assert cookie.startswith("lastra_token=")
    assert "httponly" in lowered and "samesite=strict" in lowered and "path=/api" in lowered
