"""Presence under batching: newcomers share one snapshot, yet every view converges.

With ``PRESENCE_BATCH`` > 0 the server hands everyone who joins within one batch
the same snapshot (taken since the last flush) with only the newcomer's own entry
spliced in; the next ``presence-diff`` brings the rest. These tests check what a
client author relies on: the first snapshot contains yourself, and snapshot +
diffs applied in order equal the room, on both transports, for a crowd that
arrives at once (several tabs of one user included).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import aio, asession, open_peer, server_factory, uniq, user_entry
from support.server import Server

BATCH = 0.4


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    with server_factory(tmp_path) as factory:
        yield factory(PRESENCE_BATCH=str(BATCH), PRESENCE_GRACE="0.5")


def view(client: Any) -> dict[str, set[str]]:
    """userId → peerIds: the client's snapshot with every later diff applied in order."""
    users = {u["userId"]: {p["peerId"] for p in u["peers"]} for u in client.presence["users"]}
    snap = next(i for i, e in enumerate(client.received) if e.get("type") == "presence")
    for env in client.received[snap + 1 :]:
        if env.get("type") != "presence-diff":
            continue
        for entry in env["data"]["upsert"]:
            users[entry["userId"]] = {p["peerId"] for p in entry["peers"]}
        for user_id in env["data"]["remove"]:
            users.pop(user_id, None)
    return users


async def converged(clients: list[Any], want: dict[str, set[str]], timeout: float = 5.0) -> None:
    for client in clients:
        await client.wait_until(lambda c=client: view(c) == want, "the room in its view", timeout)


@aio
async def test_a_crowd_joining_within_one_batch_converges(srv: Server) -> None:
    users = [await asession(srv.http, uniq("crowd")) for _ in range(10)]
    twin = users[0]  # one user with two tabs in the same crowd
    specs = [("ws" if i % 3 else "sse", u) for i, u in enumerate(users)] + [("ws", twin)]
    clients = list(await asyncio.gather(*(open_peer(t, srv, u) for t, u in specs)))
    for client in clients:  # everyone sees themselves at once, before any diff
        me = user_entry(client.presence["users"], client.user.userId)
        assert me is not None, client.presence
        assert client.peer_id in {p["peerId"] for p in me["peers"]}
        ids = [u["userId"] for u in client.presence["users"]]
        assert len(ids) == len(set(ids)), "one entry per user in a snapshot"
    want: dict[str, set[str]] = {}
    for client in clients:
        want.setdefault(client.user.userId, set()).add(client.peer_id)
    await converged(clients, want)
    # a later joiner (another batch): same guarantees
    late = await open_peer("sse", srv, await asession(srv.http, uniq("late")))
    want[late.user.userId] = {late.peer_id}
    assert user_entry(late.presence["users"], late.user.userId) is not None
    await converged([*clients, late], want)
    # leaving within a batch of joins: the leaver is removed from every view
    gone = clients.pop(1)
    await gone.close()
    del want[gone.user.userId]
    newcomer = await open_peer("ws", srv, await asession(srv.http, uniq("new")))
    want[newcomer.user.userId] = {newcomer.peer_id}
    await converged([*clients, late, newcomer], want, timeout=8.0)
    for client in [*clients, late, newcomer]:
        await client.close()


@aio
async def test_a_second_tab_in_the_same_batch_sees_both_of_its_peers(srv: Server) -> None:
    user = await asession(srv.http, uniq("tabs"))
    first = await open_peer("ws", srv, user)
    second = await open_peer("ws", srv, user)  # before the first's join was flushed
    me = user_entry(second.presence["users"], user.userId)
    assert me is not None
    assert {p["peerId"] for p in me["peers"]} == {first.peer_id, second.peer_id}
    await converged([first, second], {user.userId: {first.peer_id, second.peer_id}})
    await first.close()
    await second.close()
