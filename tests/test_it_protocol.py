"""Every client message of PROTOCOL §4 and its events (§5), on both transports.

Each test runs once with the acting client on WebSocket and once on SSE+POST; the
observers sit on both transports, so every row is also seen across transports.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.clients import (
    SHARED_SETTINGS,
    SseClient,
    WsClient,
    aio,
    asession,
    open_peer,
    uniq,
    user_entry,
)
from support.server import Server

TYPING_TIMEOUT = float(SHARED_SETTINGS["TYPING_TIMEOUT"])


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def newcomer(srv: Server, transport: str, name: str | None = None) -> Any:
    return await open_peer(transport, srv, await asession(srv.http, name or uniq()))


async def observers(srv: Server) -> tuple[WsClient, SseClient]:
    ws = await newcomer(srv, "ws", uniq("obs-ws"))
    sse = await newcomer(srv, "sse", uniq("obs-sse"))
    return ws, sse


# ------------------------------------------------------------------ auth / ready


@aio
async def test_auth_gives_ready_history_presence_bot_state_in_order(
    srv: Server, transport: str
) -> None:
    user = await asession(srv.http, uniq("Ada"))
    client: WsClient | SseClient
    if transport == "ws":
        client = await WsClient.connect(srv.ws, user)
        await client.auth(user.token, settle=False)
    else:
        client = await SseClient.connect(srv.http, user, settle=False)
        assert client.status == 200
    await client.expect("bot-state")
    types = [e["type"] for e in client.received]
    assert types[0] == "ready", types
    assert types[1] == "history", types
    assert types.index("presence") < types.index("bot-state"), types

    ready = client.received[0]["data"]
    assert ready["userId"] == user.userId
    assert ready["userName"] == user.userName
    assert isinstance(ready["peerId"], str) and ready["peerId"]
    assert isinstance(ready["epoch"], str) and ready["epoch"]
    assert isinstance(ready["lastSeq"], int)
    assert ready["recovered"] is False
    assert isinstance(ready["heartbeatInterval"], (int, float))
    assert isinstance(ready["iceServers"], list)
    assert isinstance(ready["limits"], dict)

    history = client.received[1]["data"]["messages"]
    assert isinstance(history, list)
    seqs = [m["seq"] for m in history]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(s <= ready["lastSeq"] for s in seqs)

    presence = client.seen("presence")[0]["data"]
    me = user_entry(presence["users"], user.userId)
    assert me is not None, presence
    assert me["userName"] == user.userName
    mine = [p for p in me["peers"] if p["peerId"] == ready["peerId"]]
    assert len(mine) == 1, me
    assert mine[0]["transport"] == transport
    assert mine[0]["media"] == {"camera": False, "mic": False, "screen": False}
    assert isinstance(mine[0]["ready"], bool)

    bots = client.seen("bot-state")[0]["data"]["bots"]
    assert len(bots) >= 2
    for bot in bots:
        assert {"name", "displayName", "personality", "enabled"} <= bot.keys()
        assert isinstance(bot["enabled"], bool)


@aio
async def test_each_connection_gets_its_own_peer_id(srv: Server, transport: str) -> None:
    user = await asession(srv.http)
    one = await open_peer(transport, srv, user)
    two = await open_peer(transport, srv, user)
    assert one.peer_id != two.peer_id
    assert one.ready["userId"] == two.ready["userId"] == user.userId


# ------------------------------------------------------------------ chat


@aio
async def test_chat_is_acked_stored_and_broadcast(srv: Server, transport: str) -> None:
    obs_ws, obs_sse = await observers(srv)
    ada = await newcomer(srv, transport, uniq("Ada"))
    cid = uniq("cid")
    reply = await ada.request("chat", {"text": "  hello there  ", "clientId": cid})
    assert reply.ok, reply
    assert reply.data["clientId"] == cid
    assert isinstance(reply.data["id"], str) and reply.data["id"]
    assert isinstance(reply.data["seq"], int)
    assert reply.data["seq"] > ada.ready["lastSeq"]
    assert reply.data.get("ref"), "an answer to a message with a ref carries the ref"
    if transport == "sse":
        assert reply.status == 200

    for client in (obs_ws, obs_sse, ada):
        env = await client.expect("chat", lambda d: d.get("clientId") == cid)
        assert env["seq"] == reply.data["seq"], env
        chat = env["data"]
        assert chat["id"] == reply.data["id"]
        assert chat["seq"] == reply.data["seq"]
        assert chat["kind"] == "user"
        assert chat["userId"] == ada.user.userId
        assert chat["userName"] == ada.user.userName
        assert chat["text"] == "hello there"
        assert isinstance(chat["ts"], (int, float))

    later = await newcomer(srv, "ws")
    assert later.history is not None
    stored = [m for m in later.history if m.get("clientId") == cid]
    assert [m["id"] for m in stored] == [reply.data["id"]]


@aio
async def test_chat_without_ref_is_acked_by_client_id(srv: Server) -> None:
    ada = await newcomer(srv, "ws")
    cid = uniq("cid")
    await ada.send("chat", {"text": "no ref here", "clientId": cid})
    ack = await ada.expect("ack", lambda d: d.get("clientId") == cid)
    assert isinstance(ack["data"]["seq"], int)
    assert isinstance(ack["data"]["id"], str)


@aio
async def test_repeated_client_id_is_stored_once_and_reacked(srv: Server, transport: str) -> None:
    obs_ws, obs_sse = await observers(srv)
    ada = await newcomer(srv, transport)
    cid = uniq("cid")
    first = await ada.request("chat", {"text": "only once", "clientId": cid})
    second = await ada.request("chat", {"text": "only once", "clientId": cid})
    assert first.ok and second.ok, (first, second)
    assert (second.data["id"], second.data["seq"]) == (first.data["id"], first.data["seq"])
    assert second.data["clientId"] == cid

    fence = uniq("fence")
    assert (await ada.request("chat", {"text": "fence", "clientId": fence})).ok
    for obs in (obs_ws, obs_sse):
        await obs.expect("chat", lambda d: d.get("clientId") == fence)
        dupes = obs.seen("chat", lambda d: d.get("clientId") == cid)
        assert len(dupes) == 1, f"{obs.transport} saw {len(dupes)} broadcasts of one clientId"

    # the key is per user: someone else's same clientId is a new message
    bob = await newcomer(srv, "ws")
    other = await bob.request("chat", {"text": "mine", "clientId": cid})
    assert other.ok
    assert other.data["id"] != first.data["id"]
    assert other.data["seq"] > first.data["seq"]


# ------------------------------------------------------------------ typing


@aio
async def test_typing_is_broadcast_and_expires(srv: Server, transport: str) -> None:
    obs_ws, obs_sse = await observers(srv)
    ada = await newcomer(srv, transport)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await ada.request("typing", {"isTyping": True})).ok
    for obs in (obs_ws, obs_sse):
        env = await obs.expect("typing", lambda d: d.get("userId") == ada.user.userId)
        assert env["data"] == {
            "userId": ada.user.userId,
            "userName": ada.user.userName,
            "isTyping": True,
        }
        assert "seq" not in env, "typing is not durable"
    for obs in (obs_ws, obs_sse):
        env = await obs.expect(
            "typing",
            lambda d: d.get("userId") == ada.user.userId and d.get("isTyping") is False,
            timeout=TYPING_TIMEOUT + 2,
        )
        assert env["data"]["userName"] == ada.user.userName
    elapsed = loop.time() - started
    assert elapsed >= TYPING_TIMEOUT - 0.3, f"cleared after {elapsed:.2f}s, before the timeout"


@aio
async def test_typing_renewal_keeps_it_alive(srv: Server) -> None:
    obs = await newcomer(srv, "ws")
    ada = await newcomer(srv, "sse")
    loop = asyncio.get_running_loop()
    assert (await ada.request("typing", {"isTyping": True})).ok
    await obs.expect("typing", lambda d: d["userId"] == ada.user.userId and d["isTyping"])
    renewed = loop.time()
    for _ in range(2):  # two renewals, each before the running timer fires
        await asyncio.sleep(TYPING_TIMEOUT * 0.6)  # pacing the sender, not waiting for an event
        assert (await ada.request("typing", {"isTyping": True})).ok
        renewed = loop.time()
    await obs.expect(
        "typing",
        lambda d: d["userId"] == ada.user.userId and d["isTyping"] is False,
        timeout=TYPING_TIMEOUT + 2,
    )
    assert loop.time() - renewed >= TYPING_TIMEOUT - 0.3, "renewal did not reset the timer"


@aio
async def test_typing_is_cleared_when_that_user_chats(srv: Server, transport: str) -> None:
    obs = await newcomer(srv, "sse" if transport == "ws" else "ws")
    ada = await newcomer(srv, transport)
    assert (await ada.request("typing", {"isTyping": True})).ok
    await obs.expect("typing", lambda d: d["userId"] == ada.user.userId and d["isTyping"])
    assert (await ada.chat("done typing")).ok
    # well before TYPING_TIMEOUT would clear it on its own
    await obs.expect(
        "typing",
        lambda d: d["userId"] == ada.user.userId and d["isTyping"] is False,
        timeout=TYPING_TIMEOUT / 2,
    )


@aio
async def test_typing_stop_is_broadcast(srv: Server, transport: str) -> None:
    obs = await newcomer(srv, "ws")
    ada = await newcomer(srv, transport)
    assert (await ada.request("typing", {"isTyping": True})).ok
    await obs.expect("typing", lambda d: d["userId"] == ada.user.userId and d["isTyping"])
    assert (await ada.request("typing", {"isTyping": False})).ok
    await obs.expect(
        "typing",
        lambda d: d["userId"] == ada.user.userId and d["isTyping"] is False,
        timeout=TYPING_TIMEOUT / 2,
    )


# ------------------------------------------------------------------ webrtc-signal


@aio
async def test_webrtc_signal_goes_only_to_its_peer_with_server_set_from(
    srv: Server, transport: str
) -> None:
    bob_ws, cy_sse = await observers(srv)
    eve = await newcomer(srv, "ws")
    ada = await newcomer(srv, transport, uniq("Ada"))
    offer = {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}
    reply = await ada.request(
        "webrtc-signal",
        {
            "to": bob_ws.peer_id,
            "signal": offer,
            "from": eve.peer_id,  # spoofed: must be ignored
            "fromUser": eve.user.user,
        },
    )
    assert reply.ok, reply
    env = await bob_ws.expect("webrtc-signal")
    assert env["data"]["from"] == ada.peer_id
    assert env["data"]["fromUser"] == ada.user.user
    assert env["data"]["signal"] == offer
    assert env["data"]["stream"] == "camera"
    assert "seq" not in env

    candidate = {
        "type": "candidate",
        "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host"},
    }
    reply = await ada.request(
        "webrtc-signal", {"to": cy_sse.peer_id, "signal": candidate, "stream": "screen"}
    )
    assert reply.ok, reply
    env = await cy_sse.expect("webrtc-signal")
    assert env["data"]["from"] == ada.peer_id
    assert env["data"]["signal"] == candidate
    assert env["data"]["stream"] == "screen"

    fence = uniq("fence")
    assert (await ada.chat("fence", fence)).ok
    for client in (bob_ws, cy_sse, eve, ada):
        await client.expect("chat", lambda d: d.get("clientId") == fence)
    assert len(bob_ws.seen("webrtc-signal")) == 1
    assert len(cy_sse.seen("webrtc-signal")) == 1
    assert eve.seen("webrtc-signal") == []
    assert ada.seen("webrtc-signal") == []


@aio
async def test_webrtc_signal_to_a_peer_of_the_same_user(srv: Server, transport: str) -> None:
    user = await asession(srv.http)
    tab1 = await open_peer(transport, srv, user)
    tab2 = await open_peer("ws", srv, user)
    bye = {"type": "bye"}
    assert (await tab1.request("webrtc-signal", {"to": tab2.peer_id, "signal": bye})).ok
    env = await tab2.expect("webrtc-signal")
    assert env["data"]["from"] == tab1.peer_id
    assert env["data"]["signal"] == bye


@aio
async def test_webrtc_signal_to_unknown_peer_is_not_found(srv: Server, transport: str) -> None:
    ada = await newcomer(srv, transport)
    reply = await ada.request(
        "webrtc-signal", {"to": "no-such-peer", "signal": {"type": "offer", "sdp": "x"}}
    )
    assert not reply.ok
    assert reply.code == "not_found", reply
    assert reply.data.get("ref")
    if transport == "sse":
        assert reply.status == 404


@aio
async def test_screen_share_signal_endpoint_sets_stream_screen(srv: Server) -> None:
    bob = await newcomer(srv, "ws")
    ada = await newcomer(srv, "sse")
    answer = {"type": "answer", "sdp": "v=0\r\n"}
    resp = await ada.post("/api/screen-share-signal", {"to": bob.peer_id, "signal": answer})
    assert resp.status_code == 200, resp.text
    env = await bob.expect("webrtc-signal")
    assert env["data"]["stream"] == "screen"
    assert env["data"]["from"] == ada.peer_id
    assert env["data"]["signal"] == answer


# ------------------------------------------------------------------ media-state, ready


def peer_of(diff: dict[str, Any], user_id: str, peer_id: str) -> dict[str, Any] | None:
    entry = user_entry(diff.get("upsert", []), user_id)
    if entry is None:
        return None
    return next((p for p in entry["peers"] if p["peerId"] == peer_id), None)


@aio
async def test_media_state_is_stored_and_broadcast_as_presence_diff(
    srv: Server, transport: str
) -> None:
    obs_ws, obs_sse = await observers(srv)
    ada = await newcomer(srv, transport)
    media = {"camera": True, "mic": False, "screen": True}
    assert (await ada.request("media-state", media)).ok

    def has_media(d: dict[str, Any]) -> bool:
        peer = peer_of(d, ada.user.userId, ada.peer_id)
        return peer is not None and peer["media"] == media

    for obs in (obs_ws, obs_sse):
        env = await obs.expect("presence-diff", has_media)
        entry = user_entry(env["data"]["upsert"], ada.user.userId)
        assert entry is not None and entry["userName"] == ada.user.userName
        assert "seq" not in env
    later = await newcomer(srv, "ws")
    entry = user_entry(later.presence["users"], ada.user.userId)
    assert entry is not None
    assert [p["media"] for p in entry["peers"] if p["peerId"] == ada.peer_id] == [media]


@aio
async def test_ready_marks_the_peer_ready(srv: Server, transport: str) -> None:
    obs = await newcomer(srv, "ws")
    ada = await newcomer(srv, transport)
    assert (await ada.request("ready", {})).ok

    def is_ready(d: dict[str, Any]) -> bool:
        peer = peer_of(d, ada.user.userId, ada.peer_id)
        return peer is not None and peer["ready"] is True

    await obs.expect("presence-diff", is_ready)


# ------------------------------------------------------------ bots (ai-request: test_it_ai.py)


@aio
async def test_bot_toggle_broadcasts_bot_state(srv: Server, transport: str) -> None:
    obs_ws, obs_sse = await observers(srv)
    ada = await newcomer(srv, transport)
    bot = ada.bots["bots"][0]
    name, enabled = bot["name"], bot["enabled"]
    try:
        assert (await ada.request("bot-toggle", {"bot": name, "enabled": not enabled})).ok

        def flipped(d: dict[str, Any]) -> bool:
            return any(b["name"] == name and b["enabled"] is (not enabled) for b in d["bots"])

        for obs in (obs_ws, obs_sse, ada):
            env = await obs.expect("bot-state", flipped)
            assert "seq" not in env
    finally:
        assert (await ada.request("bot-toggle", {"bot": name, "enabled": enabled})).ok


@aio
async def test_bot_toggle_unknown_bot_is_not_found(srv: Server, transport: str) -> None:
    ada = await newcomer(srv, transport)
    reply = await ada.request("bot-toggle", {"bot": "no-such-bot-" + uniq(), "enabled": True})
    assert reply.code == "not_found", reply
    if transport == "sse":
        assert reply.status == 404


# ------------------------------------------------------------------ ping


@aio
async def test_ping_is_answered_with_pong(srv: Server) -> None:
    ada = await newcomer(srv, "ws")
    await ada.send("ping", {"t": 123456})
    env = await ada.expect("pong")
    assert env["data"] == {"t": 123456}
    await ada.send("ping", {"t": "opaque"})
    assert (await ada.expect("pong"))["data"]["t"] == "opaque"
    await ada.send("ping", {})
    await ada.expect("pong")
