"""Presence (PROTOCOL §5): per-user entries, multi-tab, grace on leave, O(1) diffs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.clients import (
    SHARED_SETTINGS,
    aio,
    asession,
    open_peer,
    uniq,
    user_entry,
)
from support.server import Server

GRACE = float(SHARED_SETTINGS["PRESENCE_GRACE"])


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def upserts(user_id: str) -> Any:
    return lambda d: user_entry(d.get("upsert", []), user_id) is not None


def removes(user_id: str) -> Any:
    return lambda d: user_id in d.get("remove", [])


def peer_ids(entry: dict[str, Any] | None) -> set[str]:
    return {p["peerId"] for p in (entry or {}).get("peers", [])}


def system_about(name: str, word: str) -> Any:
    return lambda d: d.get("kind") == "system" and name in d.get("text", "") and word in d["text"]


async def fence(sender: Any, *observers: Any) -> None:
    """Send a chat and wait until every observer has it: all earlier events are in."""
    cid = uniq("fence")
    assert (await sender.chat("fence", cid)).ok
    for obs in observers:
        await obs.expect("chat", lambda d: d.get("clientId") == cid)


@aio
async def test_join_is_one_upsert_and_a_system_message(srv: Server, transport: str) -> None:
    obs_ws = await open_peer("ws", srv, await asession(srv.http))
    obs_sse = await open_peer("sse", srv, await asession(srv.http))
    ada_user = await asession(srv.http, uniq("Ada"))
    ada = await open_peer(transport, srv, ada_user)
    for obs in (obs_ws, obs_sse):
        env = await obs.expect("presence-diff", upserts(ada_user.userId))
        diff = env["data"]
        assert isinstance(diff["upsert"], list) and isinstance(diff["remove"], list)
        entry = user_entry(diff["upsert"], ada_user.userId)
        assert entry is not None
        assert entry["userName"] == ada_user.userName
        assert peer_ids(entry) == {ada.peer_id}
        assert entry["peers"][0]["transport"] == transport
        ids = {u["userId"] for u in diff["upsert"]}
        assert obs_ws.user.userId not in ids and obs_sse.user.userId not in ids, (
            "a diff carries only what changed, never the whole list"
        )
        assert ada_user.userId not in diff["remove"]
        joined = await obs.expect("chat", system_about(ada_user.userName, "joined"))
        assert "seq" in joined
        assert joined["data"]["kind"] == "system"


@aio
async def test_snapshot_lists_everyone_present(srv: Server) -> None:
    ada = await open_peer("ws", srv, await asession(srv.http))
    bob = await open_peer("sse", srv, await asession(srv.http))
    cy = await open_peer("ws", srv, await asession(srv.http))
    users = cy.presence["users"]
    for client in (ada, bob, cy):
        entry = user_entry(users, client.user.userId)
        assert entry is not None, users
        assert entry["userName"] == client.user.userName
        assert peer_ids(entry) == {client.peer_id}
        assert entry["peers"][0]["transport"] == client.transport
    assert len({u["userId"] for u in users}) == len(users), "one entry per user"


@aio
async def test_tabs_of_one_user_are_one_user_with_several_peers(srv: Server) -> None:
    obs = await open_peer("ws", srv, await asession(srv.http))
    user = await asession(srv.http, uniq("Tabs"))
    tab1 = await open_peer("ws", srv, user)
    await obs.expect("chat", system_about(user.userName, "joined"))
    tab2 = await open_peer("sse", srv, user)

    def both(d: dict[str, Any]) -> bool:
        return peer_ids(user_entry(d.get("upsert", []), user.userId)) == {
            tab1.peer_id,
            tab2.peer_id,
        }

    env = await obs.expect("presence-diff", both)
    entry = user_entry(env["data"]["upsert"], user.userId)
    assert entry is not None
    assert {p["transport"] for p in entry["peers"]} == {"ws", "sse"}

    later = await open_peer("sse", srv, await asession(srv.http))
    listed = [u for u in later.presence["users"] if u["userId"] == user.userId]
    assert len(listed) == 1
    assert peer_ids(listed[0]) == {tab1.peer_id, tab2.peer_id}

    await tab2.close()
    await obs.expect(
        "presence-diff",
        lambda d: peer_ids(user_entry(d.get("upsert", []), user.userId)) == {tab1.peer_id},
    )
    await fence(tab1, obs)
    assert obs.seen("presence-diff", removes(user.userId)) == []
    assert len(obs.seen("chat", system_about(user.userName, "joined"))) == 1
    assert obs.seen("chat", system_about(user.userName, "left")) == []


@aio
async def test_reload_within_grace_does_not_remove_the_user(srv: Server, transport: str) -> None:
    obs = await open_peer("ws", srv, await asession(srv.http))
    user = await asession(srv.http, uniq("Reload"))
    first = await open_peer(transport, srv, user)
    await obs.expect("chat", system_about(user.userName, "joined"))
    await first.close()
    second = await open_peer(transport, srv, user)  # the reload
    assert second.peer_id != first.peer_id
    await obs.expect(
        "presence-diff",
        lambda d: peer_ids(user_entry(d.get("upsert", []), user.userId)) == {second.peer_id},
    )
    # wait past the grace period, then check that nothing flapped
    await asyncio.sleep(GRACE + 0.3)  # absence check: nothing to await
    await fence(second, obs)
    assert obs.seen("presence-diff", removes(user.userId)) == []
    assert len(obs.seen("chat", system_about(user.userName, "joined"))) == 1
    assert obs.seen("chat", system_about(user.userName, "left")) == []
    entry = user_entry(second.presence["users"], user.userId)
    assert entry is not None and second.peer_id in peer_ids(entry)


@aio
async def test_user_is_removed_after_grace_when_the_last_peer_goes(
    srv: Server, transport: str
) -> None:
    obs = await open_peer("sse" if transport == "ws" else "ws", srv, await asession(srv.http))
    user = await asession(srv.http, uniq("Leaver"))
    tab1 = await open_peer(transport, srv, user)
    tab2 = await open_peer(transport, srv, user)
    await obs.expect(
        "presence-diff",
        lambda d: (
            peer_ids(user_entry(d.get("upsert", []), user.userId)) == {tab1.peer_id, tab2.peer_id}
        ),
    )
    await tab1.close()
    await obs.expect(
        "presence-diff",
        lambda d: peer_ids(user_entry(d.get("upsert", []), user.userId)) == {tab2.peer_id},
    )
    loop = asyncio.get_running_loop()
    gone = loop.time()
    await tab2.close()
    env = await obs.expect("presence-diff", removes(user.userId), timeout=GRACE + 3)
    elapsed = loop.time() - gone
    assert elapsed >= GRACE - 0.3, f"removed {elapsed:.2f}s after the last peer left"
    assert user_entry(env["data"].get("upsert", []), user.userId) is None
    left = await obs.expect("chat", system_about(user.userName, "left"))
    assert left["data"]["kind"] == "system"
    later = await open_peer("ws", srv, await asession(srv.http))
    assert user_entry(later.presence["users"], user.userId) is None
