"""Resume (PROTOCOL §5): by ``auth.lastSeq``+``epoch`` on WebSocket, by ``Last-Event-ID``
or ``?lastSeq=&epoch=`` on SSE; exact replay or ``recovered: false`` plus ``history``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import (
    SHARED_SETTINGS,
    Session,
    SseClient,
    WsClient,
    aio,
    asession,
    post,
    server_factory,
    uniq,
)
from support.server import Server


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """A server per call with the given settings (see ``clients.QuietServer``)."""
    with server_factory(tmp_path) as factory:
        yield factory


HISTORY_LIMIT = int(SHARED_SETTINGS["HISTORY_LIMIT"])


HOW = ["ws-auth", "sse-last-event-id", "sse-query"]


@pytest.fixture(params=HOW)
def how(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def connect(
    srv: Server, user: Session, how: str, last_seq: int | None, epoch: str | None
) -> WsClient | SseClient:
    """Open a tab of ``user`` resuming the way ``how`` says."""
    if how == "ws-auth":
        return await WsClient.open(srv, user, last_seq=last_seq, epoch=epoch)
    if how == "sse-last-event-id":
        leid = None if last_seq is None else f"{epoch}:{last_seq}"
        return await SseClient.open(srv, user, last_event_id=leid)
    params: dict[str, str] = {}
    if last_seq is not None:
        params["lastSeq"] = str(last_seq)
    if epoch is not None:
        params["epoch"] = epoch
    return await SseClient.open(srv, user, params=params)


async def chat_from_others(srv: Server, count: int) -> list[dict[str, Any]]:
    """``count`` chats by POST from users with no stream (a few users: rate limits)."""
    acks = []
    users = [await asession(srv.http) for _ in range(1 + count // 12)]
    for i in range(count):
        user = users[i // 12]
        resp = await post(
            srv.http,
            "/api/chat-message",
            {"text": f"missed {i}", "clientId": uniq("m")},
            token=user.token,
        )
        assert resp.status_code == 200, resp.text
        acks.append(resp.json())
    return acks


async def expected_since(obs: WsClient, after: int, upto: int) -> list[dict[str, Any]]:
    """What a client that never left saw with ``after < seq <= upto``."""
    await obs.wait_durable(upto)
    return [e for e in obs.durable if after < e["seq"] <= upto]


@aio
async def test_resume_replays_exactly_the_missed_events(srv: Server, how: str) -> None:
    obs = await WsClient.open(srv, await asession(srv.http))
    ada_user = await asession(srv.http, uniq("Ada"))
    ada = await connect(srv, ada_user, how, None, None)
    cid = uniq("before")
    reply = await ada.chat("before I go", cid)
    assert reply.ok
    await ada.expect("chat", lambda d: d.get("clientId") == cid)
    last_seq, epoch = ada.last_seq, ada.ready["epoch"]
    assert last_seq == reply.data["seq"]
    if isinstance(ada, SseClient):
        assert ada.last_event_id == f"{epoch}:{last_seq}"
    await ada.close()

    acks = await chat_from_others(srv, 3)
    await obs.wait_durable(acks[-1]["seq"])

    back = await connect(srv, ada_user, how, last_seq, epoch)
    assert back.ready["recovered"] is True, back.ready
    assert back.ready["epoch"] == epoch
    assert back.history is None, "a recovered resume sends no history"
    head = back.ready["lastSeq"]
    assert head >= acks[-1]["seq"]
    missed = await expected_since(obs, last_seq, head)
    assert [a["seq"] for a in acks] == [
        e["seq"] for e in missed if e["data"].get("clientId") in {a["clientId"] for a in acks}
    ]
    assert back.replayed == missed, "exact replay: same envelopes, in order, no gaps or dupes"
    if isinstance(back, SseClient):
        ids = [f.id for f in back.frames if f.id is not None][: len(missed)]
        assert ids == [f"{epoch}:{e['seq']}" for e in missed]

    # and live events go on after the replay, without duplicates
    cid = uniq("after")
    assert (await obs.chat("welcome back", cid)).ok
    env = await back.expect("chat", lambda d: d.get("clientId") == cid)
    assert env["seq"] > head
    seqs = [e["seq"] for e in back.durable]
    assert seqs == sorted(set(seqs))


@aio
async def test_resume_from_the_current_head_recovers(srv: Server, how: str) -> None:
    user = await asession(srv.http)
    first = await connect(srv, user, how, None, None)
    cid = uniq()
    assert (await first.chat("only me", cid)).ok
    await first.expect("chat", lambda d: d.get("clientId") == cid)
    epoch = first.ready["epoch"]
    # a second tab of the same user keeps the user present: nobody "left"
    keeper = await WsClient.open(srv, user)
    await first.close()
    since = keeper.last_seq
    back = await connect(srv, user, how, since, epoch)
    assert back.ready["recovered"] is True
    assert back.ready["lastSeq"] >= since
    missed = await expected_since(keeper, since, back.ready["lastSeq"])
    assert back.replayed == missed
    assert back.history is None


@pytest.mark.parametrize("fault", ["wrong-epoch", "too-old"])
@aio
async def test_resume_that_cannot_be_exact_gives_history(srv: Server, how: str, fault: str) -> None:
    obs = await WsClient.open(srv, await asession(srv.http))
    user = await asession(srv.http)
    ada = await connect(srv, user, how, None, None)
    cid = uniq()
    assert (await ada.chat("soon too old", cid)).ok
    await ada.expect("chat", lambda d: d.get("clientId") == cid)
    last_seq, epoch = ada.last_seq, ada.ready["epoch"]
    await ada.close()
    if fault == "wrong-epoch":
        epoch = "not-the-epoch-" + uniq()
        await chat_from_others(srv, 2)
    else:
        await chat_from_others(srv, HISTORY_LIMIT + 5)  # the ring no longer reaches last_seq

    back = await connect(srv, user, how, last_seq, epoch)
    assert back.ready["recovered"] is False, back.ready
    assert back.ready["epoch"] == ada.ready["epoch"]
    assert back.history is not None, "recovered: false comes with history"
    assert back.replayed == [], "no replay when not recovered"
    head = back.ready["lastSeq"]
    await obs.wait_durable(head)
    known = {m["seq"]: m for m in obs.history or []}
    known.update({e["seq"]: e["data"] for e in obs.durable if e["type"] == "chat"})
    newest = [known[s] for s in sorted(known) if s <= head][-HISTORY_LIMIT:]
    if fault == "too-old":
        assert len(back.history) == HISTORY_LIMIT
    assert [m["seq"] for m in back.history] == [m["seq"] for m in newest]
    assert back.history == newest


@aio
async def test_ws_lastseq_without_epoch_is_not_recovered(srv: Server) -> None:
    user = await asession(srv.http)
    ada = await WsClient.open(srv, user)
    assert (await ada.chat("hello")).ok
    back = await WsClient.open(srv, user, last_seq=ada.ready["lastSeq"])
    assert back.ready["recovered"] is False
    assert back.history is not None


@aio
async def test_last_event_id_wins_over_nothing_and_garbage_is_harmless(srv: Server) -> None:
    user = await asession(srv.http)
    for leid in ("garbage", ":", "epoch-only", "x:-5", "x:notanumber", ""):
        client = await SseClient.open(srv, user, last_event_id=leid)
        assert client.ready["recovered"] is False, leid
        assert client.history is not None, leid
        await client.close()


@aio
async def test_restart_closes_1012_and_a_new_epoch_gives_history(new_server: Any) -> None:
    srv = new_server(HISTORY_LIMIT=str(HISTORY_LIMIT))  # memory backend: a restart wipes it
    user = await asession(srv.http)
    ws = await WsClient.open(srv, user)
    sse = await SseClient.open(srv, await asession(srv.http))
    assert (await ws.chat("before the restart")).ok
    await ws.expect("chat", lambda d: d.get("kind") == "user")
    last_seq, epoch = ws.last_seq, ws.ready["epoch"]

    stopping = asyncio.create_task(asyncio.to_thread(srv.stop))  # SIGTERM
    code, _ = await ws.wait_closed(timeout=10)
    assert code == 1012, "a restarting server closes with 1012"
    await asyncio.wait_for(sse.closed.wait(), 10)
    await stopping
    await asyncio.to_thread(srv.start)

    back = await WsClient.open(srv, user, last_seq=last_seq, epoch=epoch)
    assert back.ready["epoch"] != epoch, "a wiped store is a new epoch"
    assert back.ready["recovered"] is False
    assert back.history is not None
    assert all(m.get("text") != "before the restart" for m in back.history)
