"""Three server processes on one Redis database are one chat (issue 7).

Every test here spreads real WebSocket and SSE+POST clients over the processes
A, B and C of one module-wide cluster and checks that they share one ``seq``
order, one presence, one typing/bot/clear state, and that signals and POSTs
reach across processes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import (
    POST_ENDPOINTS,
    SseClient,
    WsClient,
    aio,
    asession,
    open_peer,
    post,
    uniq,
    user_entry,
)
from support.cluster import barrier, cluster, durable_window, redis_client, redis_db, sibling_db_url
from support.server import Server

pytestmark = pytest.mark.redis

TYPING_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    with (
        redis_db() as url,
        cluster(
            tmp_path_factory.mktemp("cluster"), url, 3, TYPING_TIMEOUT=str(TYPING_TIMEOUT)
        ) as servers,
    ):
        yield servers


def _has_peer(d: dict[str, Any], user_id: str, peer_id: str, **want: Any) -> bool:
    entry = user_entry(d.get("upsert", []), user_id)
    if entry is None:
        return False
    for p in entry["peers"]:
        if p["peerId"] == peer_id and all(p.get(k) == v for k, v in want.items()):
            return True
    return False


# --------------------------------------------------------------------------- chat


@aio
async def test_mixed_clients_on_three_processes_see_one_seq_order(nodes: list[Server]) -> None:
    clients: list[WsClient | SseClient] = []
    for node in nodes:
        for transport in ("ws", "sse"):
            user = await asession(node.http, uniq(f"{transport}@{node.port}"))
            clients.append(await open_peer(transport, node, user))  # type: ignore[arg-type]

    start = await barrier(clients[0], clients)
    sent: dict[str, int] = {}

    async def talk(client: WsClient | SseClient) -> None:
        for i in range(6):
            cid = uniq(f"{client.transport}{i}")
            reply = await client.chat(f"{client.user.userName} says {i}", cid)  # type: ignore[union-attr]
            assert reply.ok, reply
            assert reply.data["clientId"] == cid
            sent[str(reply.data["id"])] = int(reply.data["seq"])

    await asyncio.gather(*(talk(c) for c in clients))
    end = await barrier(clients[-1], clients)

    reference = durable_window(clients[0], start, end)
    # every durable event in the window, with no gap: seq start+1 .. end
    assert [seq for seq, _, _ in reference] == list(range(start + 1, end + 1)), reference
    for client in clients[1:]:
        assert durable_window(client, start, end) == reference, (
            f"{client.transport} client on {client.ready['userName']} saw another order"
        )
    # every acked message is in that order, under the seq its ack named
    by_id = {i: seq for seq, _, i in reference}
    assert {i: by_id.get(i) for i in sent} == sent
    # and nobody got a durable event twice or out of order, over the whole run
    for client in clients:
        seqs = [int(e["seq"]) for e in client.durable]
        assert seqs == sorted(set(seqs)), f"{client.transport}: {seqs}"


@aio
async def test_same_client_id_on_two_processes_is_stored_once(nodes: list[Server]) -> None:
    a, b, c = nodes
    user = await asession(a.http, uniq("Retry"))
    watcher = await WsClient.open(c, await asession(c.http, uniq("Watch")))
    ws = await WsClient.open(a, user)
    cid = uniq("idem")

    first = await ws.chat("only once, please", cid)
    assert first.ok, first
    # the retry lands on B as a POST (no stream there), then on C over a WebSocket
    resp = await post(
        b.http,
        POST_ENDPOINTS["chat"],
        {"text": "only once, please", "clientId": cid},
        token=user.token,
    )
    assert resp.status_code == 200, resp.text
    again = resp.json()
    ws_c = await WsClient.open(c, user)
    third = await ws_c.chat("only once, please", cid)
    assert third.ok, third
    for reply in (again, third.data):
        assert (reply["clientId"], reply["id"], reply["seq"]) == (
            cid,
            first.data["id"],
            first.data["seq"],
        )

    end = await barrier(ws, [watcher, ws, ws_c])
    for client in (watcher, ws):
        copies = client.seen("chat", lambda d: d.get("clientId") == cid)
        assert len(copies) == 1, copies
        assert copies[0]["seq"] == first.data["seq"] < end


# ----------------------------------------------------------------------- presence


@aio
async def test_one_presence_across_processes(nodes: list[Server]) -> None:
    a, b, c = nodes
    ua, ub, uc = [await asession(n.http, uniq(x)) for x, n in zip("abc", nodes, strict=True)]
    on_a = await WsClient.open(a, ua)
    on_b = await SseClient.open(b, ub)
    # A hears B's join as a diff and a system message
    await on_a.expect("presence-diff", lambda d: _has_peer(d, ub.userId, on_b.peer_id))
    await on_a.expect(
        "chat",
        lambda d: d["kind"] == "system" and ub.userName in d["text"] and "joined" in d["text"],
    )
    on_c = await WsClient.open(c, uc)
    for watcher in (on_a, on_b):
        await watcher.expect(
            "presence-diff", lambda d: _has_peer(d, uc.userId, on_c.peer_id, transport="ws")
        )
        await watcher.expect("chat", lambda d: d["kind"] == "system" and uc.userName in d["text"])

    # snapshots: whoever connects anywhere sees everyone, with the right peers
    lates: list[str] = []
    for node in nodes:
        late = await SseClient.open(node, await asession(node.http, uniq("late")))
        lates.append(late.user.userId)
        users = late.presence["users"]
        for user, client in ((ua, on_a), (ub, on_b), (uc, on_c)):
            entry = user_entry(users, user.userId)
            assert entry is not None, f"{user.userName} missing on {node.port}: {users}"
            assert entry["userName"] == user.userName
            assert [(p["peerId"], p["transport"]) for p in entry["peers"]] == [
                (client.peer_id, client.transport)
            ]
        await late.close()

    # a second tab of the same user on another process: one user, two peers
    tab2 = await SseClient.open(a, uc)
    await on_b.expect(
        "presence-diff",
        lambda d: (
            (e := user_entry(d.get("upsert", []), uc.userId)) is not None
            and {p["peerId"] for p in e["peers"]} == {on_c.peer_id, tab2.peer_id}
        ),
    )
    assert not on_b.seen(
        "chat", lambda d: d["kind"] == "system" and d["text"].count(uc.userName) > 1
    )
    await tab2.close()
    await on_b.expect(
        "presence-diff",
        lambda d: (
            (e := user_entry(d.get("upsert", []), uc.userId)) is not None
            and [p["peerId"] for p in e["peers"]] == [on_c.peer_id]
        ),
    )

    # leaving C: removed on A and B, "left" announced once. The late users leave first
    # (their grace), so that C's leave is not coalesced with theirs into one message
    await on_a.wait_until(
        lambda: set(lates) <= {u for e in on_a.seen("presence-diff") for u in e["data"]["remove"]},
        "the late users' leave",
    )
    await on_c.close()
    for watcher in (on_a, on_b):
        await watcher.expect("presence-diff", lambda d: uc.userId in d.get("remove", []))
        await watcher.expect(
            "chat", lambda d: d["kind"] == "system" and d["text"] == f"{uc.userName} left"
        )
    await barrier(on_a, [on_a, on_b])
    lefts = on_a.seen(
        "chat", lambda d: d["kind"] == "system" and d["text"] == f"{uc.userName} left"
    )
    assert len(lefts) == 1, lefts


# ---------------------------------------------------------------------- signaling


@aio
async def test_webrtc_signal_crosses_processes_both_ways(nodes: list[Server]) -> None:
    a, b, c = nodes
    wes = await WsClient.open(a, await asession(a.http, uniq("Wes")))
    sue = await SseClient.open(c, await asession(c.http, uniq("Sue")))
    await wes.expect("presence-diff", lambda d: _has_peer(d, sue.user.userId, sue.peer_id))  # type: ignore[union-attr]

    offer = {"type": "offer", "sdp": "v=0 from A"}
    reply = await wes.request("webrtc-signal", {"to": sue.peer_id, "signal": offer})
    assert reply.ok, reply
    env = await sue.expect("webrtc-signal")
    assert env["data"]["from"] == wes.peer_id
    assert env["data"]["fromUser"] == wes.user.user  # type: ignore[union-attr]
    assert env["data"]["signal"] == offer
    assert env["data"]["stream"] in (None, "camera")

    answer = {"type": "answer", "sdp": "v=0 from C"}
    reply = await sue.request("webrtc-signal", {"to": wes.peer_id, "signal": answer})
    assert reply.ok, reply
    env = await wes.expect("webrtc-signal")
    assert env["data"]["from"] == sue.peer_id
    assert env["data"]["fromUser"] == sue.user.user  # type: ignore[union-attr]
    assert env["data"]["signal"] == answer

    # screen-share on the dedicated endpoint, sent to B for a tab streaming from C
    cand = {
        "type": "candidate",
        "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"},
    }
    resp = await post(
        b.http,
        "/api/screen-share-signal",
        {"to": wes.peer_id, "signal": cand},
        token=sue.user.token,  # type: ignore[union-attr]
        peer_id=sue.peer_id,
    )
    assert resp.status_code == 200, resp.text
    env = await wes.expect("webrtc-signal", lambda d: d["signal"] == cand)
    assert (env["data"]["from"], env["data"]["stream"]) == (sue.peer_id, "screen")

    # nobody else got them; an unknown peer is not_found on every process
    assert len(wes.seen("webrtc-signal")) == 2 and len(sue.seen("webrtc-signal")) == 1
    for node in nodes:
        resp = await post(
            node.http,
            POST_ENDPOINTS["webrtc-signal"],
            {"to": "p_nobody", "signal": offer},
            token=sue.user.token,  # type: ignore[union-attr]
            peer_id=sue.peer_id,
        )
        assert resp.status_code == 404 and resp.json()["code"] == "not_found", resp.text


@aio
async def test_sse_stream_on_one_process_posts_to_another(nodes: list[Server]) -> None:
    a, b, c = nodes
    me = await asession(a.http, uniq("Split"))
    watcher = await WsClient.open(c, await asession(c.http, uniq("Watch")))
    stream = await SseClient.open(a, me)  # the stream lives on A ...
    await watcher.expect("presence-diff", lambda d: _has_peer(d, me.userId, stream.peer_id))

    async def to_b(kind: str, body: dict[str, Any]) -> dict[str, Any]:
        # ... and every POST of that tab goes to B
        resp = await post(
            b.http, POST_ENDPOINTS[kind], body, token=me.token, peer_id=stream.peer_id
        )
        assert resp.status_code == 200, f"{kind} -> {resp.status_code} {resp.text}"
        return dict(resp.json())

    # chat: acked by B, delivered on A's stream and C's socket with the acked seq
    cid = uniq("split")
    ack = await to_b("chat", {"text": "posted to B", "clientId": cid, "ref": "r1"})
    assert ack["clientId"] == cid and ack["ref"] == "r1"
    for client in (stream, watcher):
        env = await client.expect("chat", lambda d: d.get("clientId") == cid)
        assert (env["seq"], env["data"]["id"]) == (ack["seq"], ack["id"])
        assert env["data"]["userId"] == me.userId

    # typing
    await to_b("typing", {"isTyping": True})
    for client in (stream, watcher):
        await client.expect("typing", lambda d: d["userId"] == me.userId and d["isTyping"])

    # media-state of the tab on A, set through B (X-Lastra-Peer)
    await to_b("media-state", {"camera": True, "mic": False, "screen": True})
    media = {"camera": True, "mic": False, "screen": True}
    for client in (stream, watcher):
        await client.expect(
            "presence-diff", lambda d: _has_peer(d, me.userId, stream.peer_id, media=media)
        )

    # ready for offers
    await to_b("ready", {})
    await watcher.expect(
        "presence-diff", lambda d: _has_peer(d, me.userId, stream.peer_id, ready=True)
    )

    # a signal from the A tab, posted to B, to the socket on C; and one back
    offer = {"type": "offer", "sdp": "v=0 via B"}
    await to_b("webrtc-signal", {"to": watcher.peer_id, "signal": offer})
    env = await watcher.expect("webrtc-signal")
    assert env["data"]["from"] == stream.peer_id
    assert env["data"]["fromUser"] == me.user
    assert env["data"]["signal"] == offer
    back = {"type": "answer", "sdp": "v=0 from C"}
    assert (await watcher.request("webrtc-signal", {"to": stream.peer_id, "signal": back})).ok
    env = await stream.expect("webrtc-signal")
    assert (env["data"]["from"], env["data"]["signal"]) == (watcher.peer_id, back)

    # the state set through B is what a newcomer on C sees
    late = await WsClient.open(c, await asession(c.http, uniq("late")))
    entry = user_entry(late.presence["users"], me.userId)
    assert entry is not None
    assert entry["peers"] == [
        {"peerId": stream.peer_id, "transport": "sse", "media": media, "ready": True}
    ]


# -------------------------------------------------------------------------- resume


@aio
async def test_reconnect_to_another_process_resumes_by_last_seq(nodes: list[Server]) -> None:
    a, b, c = nodes
    talker = await WsClient.open(b, await asession(b.http, uniq("Talk")))
    for transport, first, second in (("ws", a, c), ("sse", c, b)):
        user = await asession(first.http, uniq(f"Roam{transport}"))
        tab = await open_peer(transport, first, user)
        seq = await barrier(talker, [tab, talker])
        epoch, last = tab.ready["epoch"], tab.last_seq
        assert last >= seq
        await tab.close()

        missed = [await talker.chat(f"while {transport} was away {i}") for i in range(4)]
        assert all(r.ok for r in missed)
        if transport == "ws":
            again = await WsClient.open(second, user, last_seq=last, epoch=epoch)
        else:
            again = await SseClient.open(second, user, last_event_id=f"{epoch}:{last}")
        assert again.ready["recovered"] is True, again.ready
        assert again.ready["epoch"] == epoch
        assert again.history is None
        replayed = [(e["seq"], e["type"], e["data"].get("id")) for e in again.replayed]
        # (a "left" for the closed tab may have been stored just before; let it arrive)
        await talker.wait_durable(again.ready["lastSeq"])
        expected = durable_window(talker, last, again.ready["lastSeq"])
        assert replayed == expected, (replayed, expected)
        assert {r.data["id"] for r in missed} <= {i for _, _, i in replayed}
        assert [s for s, _, _ in replayed] == list(range(last + 1, again.ready["lastSeq"] + 1))
        # and it is live again on the new process
        live = await barrier(talker, [again])
        assert live in [e["seq"] for e in again.durable]


# ------------------------------------------------------------ typing, bots, clear


@aio
async def test_typing_bots_and_clear_are_identical_everywhere(nodes: list[Server]) -> None:
    clients: list[WsClient | SseClient] = []
    for node, transport in zip(nodes, ("ws", "sse", "ws"), strict=True):
        clients.append(
            await open_peer(transport, node, await asession(node.http, uniq("All")))  # type: ignore[arg-type]
        )
    on_a, on_b, on_c = clients
    typer = on_a.user
    assert typer is not None

    # typing on A: on everywhere, then off everywhere after the timeout (by the owner, once)
    assert (await on_a.request("typing", {"isTyping": True})).ok
    for client in clients:
        await client.expect("typing", lambda d: d["userId"] == typer.userId and d["isTyping"])
    for client in clients:
        await client.expect(
            "typing",
            lambda d: d["userId"] == typer.userId and not d["isTyping"],
            timeout=TYPING_TIMEOUT + 3,
        )
    # typing then chatting on B clears it everywhere at once
    assert (await on_b.request("typing", {"isTyping": True})).ok
    reply = await on_b.chat("done typing")
    assert reply.ok
    for client in clients:
        await client.expect(
            "typing",
            lambda d: d["userId"] == on_b.user.userId and not d["isTyping"],  # type: ignore[union-attr]
        )
    await barrier(on_c, clients)
    for client in clients:
        states = [
            e["data"]["isTyping"]
            for e in client.seen("typing")
            if e["data"]["userId"] in (typer.userId, on_b.user.userId)  # type: ignore[union-attr]
        ]
        assert states == [True, False, True, False], states

    # a bot toggled on B: everyone's bot-state, and a newcomer's snapshot on C
    bot = on_b.bots["bots"][0]["name"]
    for enabled in (False, True):
        assert (await on_b.request("bot-toggle", {"bot": bot, "enabled": enabled})).ok
        seen = []
        for client in clients:
            env = await client.expect(
                "bot-state",
                lambda d, e=enabled: any(x["name"] == bot and x["enabled"] is e for x in d["bots"]),
            )
            seen.append(env["data"])
        assert all(d == seen[0] for d in seen), seen
        for node in nodes:
            late = await WsClient.open(node, await asession(node.http, uniq("late")))
            assert late.bots == seen[0], (node.port, late.bots)
            await late.close()

    # clear on C: one durable clear with one seq everywhere; history empty on every process
    before = await barrier(on_a, clients)
    reply = await on_c.request("clear", {})
    assert reply.ok, reply
    seqs = set()
    for client in clients:
        env = await client.expect("clear")
        assert env["data"]["by"] == on_c.user.user  # type: ignore[union-attr]
        seqs.add(env["seq"])
    assert len(seqs) == 1 and seqs.pop() > before
    for node in nodes:
        late = await SseClient.open(node, await asession(node.http, uniq("after")))
        history = late.history
        assert history is not None
        assert all(m["seq"] > before for m in history), history
        assert not [m for m in history if m.get("kind") == "user"], history
        await late.close()


@aio
async def test_user_whose_tabs_on_two_processes_close_together_leaves(
    nodes: list[Server],
) -> None:
    a, b, c = nodes
    watcher = await WsClient.open(b, await asession(b.http, uniq("Watch")))
    user = await asession(a.http, uniq("TwoTabs"))
    tab_a = await WsClient.open(a, user)
    tab_c = await SseClient.open(c, user)
    await watcher.expect(
        "presence-diff",
        lambda d: (
            (e := user_entry(d.get("upsert", []), user.userId)) is not None
            and {p["peerId"] for p in e["peers"]} == {tab_a.peer_id, tab_c.peer_id}
        ),
    )
    # both tabs go at once (the browser closed): each process sees its own tab go
    # before it hears of the other one
    await asyncio.gather(tab_a.close(), tab_c.close())
    await watcher.expect("presence-diff", lambda d: user.userId in d.get("remove", []), timeout=5)
    await watcher.expect(
        "chat", lambda d: d["kind"] == "system" and d["text"] == f"{user.userName} left"
    )
    for node in nodes:
        late = await WsClient.open(node, await asession(node.http, uniq("late")))
        assert user_entry(late.presence["users"], user.userId) is None, late.presence
        await late.close()


# ------------------------------------------------------------- two deployments


CHANNEL_BUG = (
    "server bug: RedisBroker fans out on the pub/sub channel '{lastra}:bus' "
    "(app/backends/redis.py, RedisBroker.__init__), and Redis pub/sub ignores the "
    "database number: two chats on two databases of one Redis server see each "
    "other's presence, typing, bot states and signals (the durable stream is per database)"
)


def test_two_chats_on_two_databases_of_one_redis_stay_apart(
    nodes: list[Server], tmp_path: Path
) -> None:
    url = sibling_db_url()
    probe = redis_client(url)
    try:
        if probe.dbsize():
            pytest.skip(f"{url} is not empty: someone else uses it")
    finally:
        probe.close()
    with redis_db(url), cluster(tmp_path, url, 1) as (other,):
        aio(functools.partial(_two_chats, nodes[0], other))()


async def _two_chats(ours: Server, theirs: Server) -> None:
    here = await WsClient.open(ours, await asession(ours.http, uniq("Here")))
    there = await WsClient.open(theirs, await asession(theirs.http, uniq("There")))
    assert (await there.request("typing", {"isTyping": True})).ok
    assert (await there.chat("only for the other chat")).ok
    # a user of this chat, later, on the same process: the other chat's events must not show
    mark = await WsClient.open(ours, await asession(ours.http, uniq("Mark")))
    await here.expect(
        "presence-diff", lambda d: user_entry(d["upsert"], mark.user.userId) is not None
    )  # type: ignore[union-attr]
    foreign = there.user.userId  # type: ignore[union-attr]
    assert user_entry(mark.presence["users"], foreign) is None, mark.presence
    assert not here.seen("typing", lambda d: d["userId"] == foreign)
    assert not here.seen("presence-diff", lambda d: user_entry(d["upsert"], foreign) is not None)
    assert not here.seen("chat", lambda d: d.get("userId") == foreign)
