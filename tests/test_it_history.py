"""History (PROTOCOL §5): the ring of the newest ``historyLimit`` messages, and ``clear``."""

from __future__ import annotations

import pytest
from support.clients import (
    SHARED_SETTINGS,
    SseClient,
    WsClient,
    aio,
    asession,
    open_peer,
    post,
    uniq,
)
from support.server import Server

HISTORY_LIMIT = int(SHARED_SETTINGS["HISTORY_LIMIT"])


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@aio
async def test_history_is_the_newest_history_limit_messages(srv: Server, transport: str) -> None:
    obs = await WsClient.open(srv, await asession(srv.http))
    per_user = HISTORY_LIMIT // 2 + 3  # two users, more than the limit in all, within rate limits
    for user in [await asession(srv.http) for _ in range(2)]:
        for i in range(per_user):
            resp = await post(
                srv.http,
                "/api/chat-message",
                {"text": f"{user.userName} {i}", "clientId": uniq()},
                token=user.token,
            )
            assert resp.status_code == 200, resp.text
    last = resp.json()["seq"]
    await obs.wait_durable(last)

    late = await open_peer(transport, srv, await asession(srv.http))
    assert late.ready["limits"]["historyLimit"] == HISTORY_LIMIT
    history = late.history
    assert history is not None
    assert len(history) == HISTORY_LIMIT
    head = late.ready["lastSeq"]
    await obs.wait_durable(head)
    newest = [e["data"] for e in obs.durable if e["type"] == "chat" and e["seq"] <= head]
    assert history == newest[-HISTORY_LIMIT:], "the newest messages, oldest first"
    assert any(m["seq"] == last for m in history)


@aio
async def test_clear_empties_history_and_is_broadcast_durably(srv: Server, transport: str) -> None:
    obs_ws = await WsClient.open(srv, await asession(srv.http))
    obs_sse = await SseClient.open(srv, await asession(srv.http))
    ada = await open_peer(transport, srv, await asession(srv.http, uniq("Ada")))
    old = uniq("old")
    assert (await ada.chat("soon gone", old)).ok
    await obs_ws.expect("chat", lambda d: d.get("clientId") == old)

    reply = await ada.request("clear", {})
    assert reply.ok, reply
    for client in (obs_ws, obs_sse, ada):
        env = await client.expect("clear")
        assert isinstance(env["seq"], int), "clear is durable"
        assert env["data"]["by"] == {"userId": ada.user.userId, "userName": ada.user.userName}
    clear_env = obs_ws.seen("clear")[-1]
    clear_seq = clear_env["seq"]
    before = obs_ws.received[: next(i for i, e in enumerate(obs_ws.received) if e is clear_env)]
    assert clear_seq > max(e["seq"] for e in before if "seq" in e)
    if transport == "sse":
        frame = next(f for f in obs_sse.frames if f.event == "clear")
        assert frame.id == f"{obs_sse.ready['epoch']}:{clear_seq}"

    late = await open_peer(transport, srv, await asession(srv.http))
    assert late.history is not None
    assert all(m["seq"] >= clear_seq for m in late.history), late.history
    assert all(m.get("clientId") != old for m in late.history)

    # the chat goes on after a clear, and the new message is in history
    new = uniq("new")
    assert (await ada.chat("fresh start", new)).ok
    later = await open_peer(transport, srv, await asession(srv.http))
    assert any(m.get("clientId") == new for m in later.history or [])
    assert all(m.get("clientId") != old for m in later.history or [])
