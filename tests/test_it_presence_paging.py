"""Large rooms over real sockets (protocol §8): a partial snapshot, paging, exact diffs.

A server with ``PRESENCE_SNAPSHOT_MAX=5``: a newcomer to a room of more users gets
the first five (in join order) and itself, ``total``, ``online`` and a cursor;
``presence-page`` (a WebSocket message, or ``POST /api/presence-page`` for SSE)
brings the rest, and the diffs, exact as ever, carry the counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import SseClient, WsClient, aio, asession, open_peer, server_factory, uniq
from support.server import Server

MAX = 5


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    with server_factory(tmp_path) as factory:
        yield factory(PRESENCE_SNAPSHOT_MAX=str(MAX), PRESENCE_BATCH="0.05", PRESENCE_GRACE="0.3")


async def page(client: Any, cursor: str) -> dict[str, Any]:
    """One ``presence-page`` over the client's own transport."""
    if isinstance(client, WsClient):
        ref = uniq("ref")
        await client.send("presence-page", {"cursor": cursor}, ref=ref)
        env = await client.expect_any(("presence-page", "error"), lambda d: d.get("ref") == ref)
        assert env is not None and env["type"] == "presence-page", env
        data: dict[str, Any] = env["data"]
        return data
    assert isinstance(client, SseClient)
    resp = await client.post("/api/presence-page", {"cursor": cursor})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def whole_list(client: Any) -> dict[str, set[str]]:
    """userId → peerIds: the snapshot, every page, then every diff received so far."""
    users = {u["userId"]: {p["peerId"] for p in u["peers"]} for u in client.presence["users"]}
    cursor = client.presence.get("cursor")
    while cursor is not None:
        data = await page(client, cursor)
        assert len(data["users"]) <= MAX
        users |= {u["userId"]: {p["peerId"] for p in u["peers"]} for u in data["users"]}
        cursor = data["cursor"]
    return users


def with_diffs(client: Any, users: dict[str, set[str]], since: int) -> dict[str, set[str]]:
    users = dict(users)
    for env in client.received[since:]:
        if env.get("type") == "presence-diff":
            for entry in env["data"]["upsert"]:
                users[entry["userId"]] = {p["peerId"] for p in entry["peers"]}
            for user_id in env["data"]["remove"]:
                users.pop(user_id, None)
    return users


@aio
async def test_newcomers_get_a_partial_snapshot_and_page_the_whole_room(srv: Server) -> None:
    sessions = [await asession(srv.http, uniq("big")) for _ in range(8)]
    crowd = [await open_peer("ws" if i % 2 else "sse", srv, s) for i, s in enumerate(sessions)]
    room = {c.user.userId: {c.peer_id} for c in crowd}
    for transport in ("ws", "sse"):
        me = await asession(srv.http, uniq(f"new-{transport}"))
        newcomer = await open_peer(transport, srv, me)
        room[me.userId] = {newcomer.peer_id}
        snap = newcomer.presence
        listed = [u["userId"] for u in snap["users"]]
        assert me.userId in listed  # itself at once, as in a small room
        assert len(listed) <= MAX + 1
        assert snap["total"] == len(room) and snap["online"] == len(room)
        assert isinstance(snap["cursor"], str)
        listed_all = await whole_list(newcomer)
        snap_at = next(i for i, e in enumerate(newcomer.received) if e["type"] == "presence")

        def complete(
            c: Any = newcomer, users: dict[str, set[str]] = listed_all, since: int = snap_at + 1
        ) -> bool:
            return with_diffs(c, users, since) == room  # joins still pending: a diff

        await newcomer.wait_until(complete, "the whole room, from pages and diffs", 5.0)
        crowd.append(newcomer)


@aio
async def test_diffs_stay_exact_and_carry_the_counts(srv: Server) -> None:
    sessions = [await asession(srv.http, uniq("big")) for _ in range(7)]
    crowd = list(
        await asyncio.gather(
            *(open_peer("ws" if i % 2 else "sse", srv, s) for i, s in enumerate(sessions))
        )
    )
    watchers = crowd[-2:]  # one of each transport
    assert {w.transport for w in watchers} == {"ws", "sse"}
    lists = {id(w): await whole_list(w) for w in watchers}
    marks = {id(w): len(w.received) for w in watchers}

    leaver, stayer = crowd[0], crowd[1]
    await leaver.close()
    late = await open_peer("ws", srv, await asession(srv.http, uniq("late")))
    want = {c.user.userId: {c.peer_id} for c in [*crowd[1:], late]}

    for w in watchers:

        def settled(c: Any = w) -> bool:
            return with_diffs(c, lists[id(c)], marks[id(c)]) == want

        await w.wait_until(settled, "the room, through pages and diffs", 5.0)
        diffs = [e["data"] for e in w.received[marks[id(w)] :] if e["type"] == "presence-diff"]
        assert diffs[-1]["total"] == len(want) and diffs[-1]["online"] == len(want)
        assert any(leaver.user.userId in d["remove"] for d in diffs)
    assert stayer.user.userId in want


def diffs_of(client: Any, since: int = 0) -> list[dict[str, Any]]:
    return [e["data"] for e in client.received[since:] if e["type"] == "presence-diff"]


def latest_online(client: Any) -> int:
    """The newest ``online`` count the client was given (snapshot or diff)."""
    counted = [d["online"] for d in diffs_of(client) if "online" in d]
    return int(counted[-1] if counted else client.presence["online"])


def upserted(diffs: list[dict[str, Any]]) -> set[str]:
    return {u["userId"] for d in diffs for u in d["upsert"]} | {
        r for d in diffs for r in d["remove"]
    }


@aio
async def test_a_client_keeping_its_first_page_hears_of_that_page_and_the_counts(
    srv: Server,
) -> None:
    """Diffs cut to what a client holds: a crowd's changes cost it counts, not entries."""
    sessions = [await asession(srv.http, uniq("win")) for _ in range(9)]
    crowd = [await open_peer("ws", srv, s) for s in sessions]
    pager = crowd[-1]
    await whole_list(pager)  # holds the whole list from here on
    keepers = [await open_peer(t, srv, await asession(srv.http, uniq(t))) for t in ("ws", "sse")]
    mark = {id(c): len(c.received) for c in [pager, *keepers]}
    for keeper in keepers:
        page_ids = {u["userId"] for u in keeper.presence["users"]}  # its part: the first page
        inside = next(c for c in crowd[:-1] if c.user.userId in page_ids)
        outside = next(c for c in crowd[:-1] if c.user.userId not in page_ids)
        # a change beyond its page first, then one within it (a later batch or the same)
        await outside.send("media-state", {"camera": True, "mic": False, "screen": False})
        await pager.wait_until(
            lambda o=outside: o.user.userId in upserted(diffs_of(pager, mark[id(pager)])),
            "the whole-list client hearing of the change beyond the page",
        )
        await inside.send("media-state", {"camera": True, "mic": True, "screen": False})

        def heard(k: Any = keeper, i: Any = inside) -> bool:
            return any(
                u["userId"] == i.user.userId and u["peers"] and u["peers"][0]["media"]["mic"]
                for d in diffs_of(k, mark[id(k)])
                for u in d["upsert"]
            )

        await keeper.wait_until(heard, "the change within its page", 5.0)
        assert outside.user.userId not in upserted(diffs_of(keeper, mark[id(keeper)]))
        mark[id(pager)] = len(pager.received)

    # someone beyond both pages leaves: the keepers hear the counts only
    held = {u["userId"] for k in keepers for u in k.presence["users"]}
    leaver = next(c for c in crowd[:-1] if c.user.userId not in held)
    online = {id(k): latest_online(k) for k in keepers}
    await leaver.close()
    for keeper in keepers:
        await keeper.wait_until(
            lambda k=keeper: latest_online(k) == online[id(k)] - 1,
            "the counts after a leave beyond its page",
            5.0,
        )
        assert leaver.user.userId not in upserted(diffs_of(keeper, mark[id(keeper)]))


@aio
async def test_partial_holders_get_the_whole_list_when_the_room_shrinks_back(
    srv: Server,
) -> None:
    sessions = [await asession(srv.http, uniq("shrink")) for _ in range(7)]
    crowd = [await open_peer("ws", srv, s) for s in sessions]
    keeper = await open_peer("sse", srv, await asession(srv.http, uniq("keep")))
    assert keeper.presence["cursor"] is not None  # 8 users: it holds a page
    mark = len(keeper.received)
    for c in crowd[:4]:  # 4 users left: at most MAX, a small room again
        await c.close()
    want = {c.user.userId for c in crowd[4:]} | {keeper.user.userId}

    def whole() -> bool:
        snaps = [e["data"] for e in keeper.received[mark:] if e["type"] == "presence"]
        return bool(snaps) and {u["userId"] for u in snaps[-1]["users"]} == want

    await keeper.wait_until(whole, "a fresh whole presence list", 5.0)
