"""Large rooms (protocol §8): a partial snapshot, its counts, paging the rest, exact diffs.

The list is in join order (a cursor is the list key of a page's last user), so
``room(n)`` joins u{n-1} first: the list's order is not the userIds' order.
"""

from __future__ import annotations

from typing import Any

from support.corepair import CorePair, FakePeer

from app.core import ChatConfig, ClientError, parse
from app.core.ratelimit import Rate


def room(n: int, snapshot_max: int = 3, **kw: Any) -> tuple[CorePair, list[FakePeer]]:
    kw.setdefault("presence_batch_large", 0.0)
    config = ChatConfig(presence_batch=0.0, presence_snapshot_max=snapshot_max, **kw)
    pair = CorePair(config, bots=[])
    # joined in reverse order, so the list's order (arrival) is not the userIds' order
    peers = [pair.connect(f"User{i}", user_id=f"u{i:02d}") for i in reversed(range(n))]
    pair.reset_logs()
    return pair, peers


def page(peer: FakePeer, cursor: str | None, ref: str = "r1") -> dict[str, Any]:
    data = {} if cursor is None else {"cursor": cursor}
    [reply] = peer.send({"type": "presence-page", "data": data, "ref": ref})
    assert reply.type == "presence-page", reply
    return reply.data


def key(pair: CorePair, user_id: str) -> str:
    """The list key (a cursor) of ``user_id``."""
    found = pair.chat.presence.order.key_of(user_id)
    assert found is not None
    return found


def ids(users: list[dict[str, Any]]) -> list[str]:
    return [u["userId"] for u in users]


def test_a_room_at_the_threshold_keeps_the_whole_snapshot_and_plain_diffs() -> None:
    pair, peers = room(3)
    (presence, _bots) = pair.chat.snapshot_events()
    assert set(presence.data) == {"users"} and len(presence.data["users"]) == 3
    pair.disconnect(peers[0])
    assert set(pair.diffs()[0]) == {"upsert", "remove"}


def test_above_the_threshold_the_snapshot_is_the_first_page_with_the_counts() -> None:
    pair, _peers = room(8)
    (presence, _bots) = pair.chat.snapshot_events()
    assert presence.data == {
        "users": presence.data["users"],
        "total": 8,
        "online": 8,
        "cursor": key(pair, "u05"),
    }
    assert ids(presence.data["users"]) == ["u07", "u06", "u05"]  # the first to arrive


def test_paging_walks_the_whole_list_once_in_join_order() -> None:
    _pair, peers = room(8)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        data = page(peers[0], cursor, ref=f"p{pages}")
        assert data["ref"] == f"p{pages}" and data["total"] == 8 and len(data["users"]) <= 3
        seen += ids(data["users"])
        cursor, pages = data["cursor"], pages + 1
        if cursor is None:
            break
    assert seen == [f"u{i:02d}" for i in reversed(range(8))] and pages == 3


def test_a_cursor_survives_its_user_leaving_and_others_joining() -> None:
    pair, peers = room(8, presence_grace=0.0)
    first = page(peers[0], None)
    assert first["cursor"] == key(pair, "u05")
    by_id = {p.user_id: p for p in peers}
    pair.disconnect(by_id["u05"])  # the cursor's own user goes
    pair.disconnect(by_id["u02"])
    pair.advance(0.1)  # grace 0: both are gone
    pair.connect("Newcomer", user_id="u03a")  # a newcomer sorts last
    second = page(peers[0], first["cursor"])
    assert ids(second["users"]) == ["u04", "u03", "u01"]
    assert (second["total"], second["online"]) == (7, 7)
    third = page(peers[0], second["cursor"])
    assert ids(third["users"]) == ["u00", "u03a"] and third["cursor"] is None


def test_diffs_stay_exact_and_carry_the_counts_while_the_room_is_large() -> None:
    pair, peers = room(5, presence_grace=5.0)
    by_id = {p.user_id: p for p in peers}
    pair.disconnect(by_id["u04"])  # in grace: listed, not online
    [diff] = pair.diffs()
    assert diff["remove"] == [] and ids(diff["upsert"]) == ["u04"]
    assert diff["upsert"][0]["peers"] == []
    assert (diff["total"], diff["online"]) == (5, 4)
    pair.advance(5.0)  # u04 leaves: 4 users, one more diff with the counts (on the way down)
    assert pair.diffs()[-1] == {"upsert": [], "remove": ["u04"], "total": 4, "online": 4}
    pair.disconnect(by_id["u03"])
    pair.advance(5.0)  # 3 users: at the threshold, the counts come once more
    assert pair.diffs()[-1] == {"upsert": [], "remove": ["u03"], "total": 3, "online": 3}
    pair.disconnect(by_id["u02"])
    assert set(pair.diffs()[-1]) == {"upsert", "remove"}  # a small room again: today's diff


def test_online_counts_users_with_a_tab_across_tabs_and_reloads() -> None:
    pair, _peers = room(4)
    second_tab = pair.connect("User1", user_id="u01")
    assert pair.chat.presence.online == 4
    pair.disconnect(second_tab)
    assert pair.chat.presence.online == 4
    presence = pair.chat.presence
    assert presence.online == sum(1 for u in presence.users.values() if u.peers)
    assert [presence.order.user_at(k) for k in presence.order.keys] == list(presence.users)


def test_the_cursor_is_validated_and_paging_is_rate_limited() -> None:
    for bad in ({"cursor": 7}, {"cursor": ""}, {"cursor": "x" * 257}):
        try:
            parse({"type": "presence-page", "data": bad})
        except ClientError as exc:
            assert exc.code == "invalid"
        else:
            raise AssertionError(f"{bad} was accepted")
    pair, peers = room(8, rate_other=Rate(1, 2))
    assert page(peers[0], None)["cursor"] == key(pair, "u05")
    assert page(peers[0], key(pair, "u05"))["cursor"] == key(pair, "u02")
    cursor = key(pair, "u02")
    [error] = peers[0].send({"type": "presence-page", "data": {"cursor": cursor}, "ref": "r3"})
    assert error.type == "error" and error.data["code"] == "rate_limited"
    assert error.data["ref"] == "r3"


def test_a_post_gets_the_page_as_its_answer() -> None:
    pair, peers = room(5)
    [reply] = pair.post(peers[0].identity, "presence-page", {"cursor": key(pair, "u02")})
    assert ids(reply.data["users"]) == ["u01", "u00"] and reply.data["cursor"] is None


def test_a_tab_holds_its_first_page_and_pages_in_order_extend_it() -> None:
    pair, peers = room(8)
    presence, me = pair.chat.presence, peers[0]
    presence.hold(me.peer_id, key(pair, "u05"))  # what the greeting's partial snapshot records
    page(me, key(pair, "u05"))
    assert presence.held[me.peer_id] == key(pair, "u02")
    page(me, None)  # the first page again: still contiguous, nothing lost
    assert presence.held[me.peer_id] == key(pair, "u02")
    page(me, key(pair, "u02"))  # the last page: the whole list
    assert me.peer_id not in presence.held


def test_a_page_beyond_a_gap_is_answered_but_not_held() -> None:
    pair, peers = room(8)
    presence, me = pair.chat.presence, peers[0]
    presence.hold(me.peer_id, key(pair, "u05"))
    assert ids(page(me, key(pair, "u02"))["users"]) == ["u01", "u00"]  # answered
    assert presence.held[me.peer_id] == key(pair, "u05")  # the diffs cannot speak for u04..u02


def test_a_closed_tab_is_forgotten() -> None:
    pair, peers = room(8)
    pair.chat.presence.hold(peers[0].peer_id, key(pair, "u05"))
    pair.disconnect(peers[0])
    assert pair.chat.presence.held == {}


def test_a_large_room_batches_its_diffs_on_the_longer_interval() -> None:
    config = ChatConfig(presence_batch=0.1, presence_batch_large=1.0, presence_snapshot_max=3)
    for users, wait in ((3, 0.1), (6, 1.0)):
        pair = CorePair(config, bots=[])
        peers = [pair.connect(f"User{i}", user_id=f"u{i:02d}") for i in range(users)]
        pair.run_for(2.0)
        pair.reset_logs()
        pair.disconnect(peers[0])
        pair.run_for(wait - 0.05, step=0.05)
        assert pair.diffs() == [], (users, "too early")
        pair.run_for(0.1, step=0.05)
        assert len(pair.diffs()) == 1, (users, "on time")


def test_partial_holders_get_the_whole_list_when_the_room_shrinks_back() -> None:
    pair, peers = room(5, presence_grace=0.0)
    by_id = {p.user_id: p for p in peers}
    watcher = by_id["u00"]
    pair.chat.presence.hold(watcher.peer_id, key(pair, "u02"))
    pair.disconnect(by_id["u04"])
    pair.advance(0.1)  # 4 users: still large, still partial
    assert not [s for s in pair.sends if s.event.type == "presence"]
    pair.disconnect(by_id["u03"])
    pair.advance(0.1)  # 3 users: small again
    [resync] = [s for s in pair.sends if s.event.type == "presence"]
    assert resync.peer_id == watcher.peer_id
    assert ids(resync.event.data["users"]) == ["u02", "u01", "u00"]  # (arrival order)
    assert pair.chat.presence.held == {}
