"""Presence (PROTOCOL §5): users with tabs, join/leave messages, grace, batching."""

from __future__ import annotations

import pytest
from support.corepair import CorePair

from app.core import ChatConfig, Peer
from app.core.presence import Presence, summarize


def config(grace: float = 5.0, batch: float = 0.0) -> ChatConfig:
    return ChatConfig(presence_grace=grace, presence_batch=batch)


# ----------------------------------------------------------------- summarize


@pytest.mark.parametrize(
    ("names", "verb", "text"),
    [
        (["Ada"], "joined", "Ada joined"),
        (["Ada", "Bob"], "joined", "Ada and Bob joined"),
        (["Ada", "Bob", "Cy"], "left", "Ada, Bob and Cy left"),
        (["Ada", "Bob", "Cy", "Di"], "joined", "Ada, Bob and 2 others joined"),
        (["Ada", "Bob", *[f"u{i}" for i in range(12)]], "joined", "Ada, Bob and 12 others joined"),
    ],
)
def test_summarize(names: list[str], verb: str, text: str) -> None:
    assert summarize(names, verb) == text


# ---------------------------------------------------------- join and leave


def test_first_peer_upserts_the_user_and_announces_the_join() -> None:
    pair = CorePair(config())
    watcher = pair.connect("Watcher")
    pair.reset_logs()
    ada = pair.connect("Ada", transport="sse")
    diff = pair.diffs()
    assert diff == [
        {
            "upsert": [
                {
                    "userId": ada.user_id,
                    "userName": "Ada",
                    "peers": [
                        {
                            "peerId": ada.peer_id,
                            "transport": "sse",
                            "media": {"camera": False, "mic": False, "screen": False},
                            "ready": False,
                        }
                    ],
                }
            ],
            "remove": [],
        }
    ]
    joined = watcher.events("chat")
    assert len(joined) == 1
    assert joined[0].seq == pair.seq
    assert joined[0].data["kind"] == "system"
    assert joined[0].data["text"] == "Ada joined"
    assert joined[0].data["userId"] is None
    assert joined[0].data["userName"] is None
    assert pair.broadcast_types() == ["presence-diff", "chat"]


def test_a_joining_peer_sees_its_own_join() -> None:
    pair = CorePair(config())
    ada = pair.connect("Ada")
    assert [e.type for e in ada.inbox] == ["presence-diff", "chat"]


def test_second_tab_upserts_both_peers_without_a_join_message() -> None:
    pair = CorePair(config())
    tab1 = pair.connect("Ada")
    pair.reset_logs()
    tab2 = pair.connect("Ada")
    (diff,) = pair.diffs()
    (user,) = diff["upsert"]
    assert [p["peerId"] for p in user["peers"]] == [tab1.peer_id, tab2.peer_id]
    assert diff["remove"] == []
    assert pair.system_texts() == ["Ada joined"]
    assert tab1.events("chat") == []


def test_closing_one_of_two_tabs_is_an_upsert_only() -> None:
    pair = CorePair(config())
    tab1 = pair.connect("Ada")
    tab2 = pair.connect("Ada")
    pair.reset_logs()
    pair.disconnect(tab1)
    (diff,) = pair.diffs()
    assert [p["peerId"] for p in diff["upsert"][0]["peers"]] == [tab2.peer_id]
    pair.run_for(20, step=1)
    assert pair.system_texts() == ["Ada joined"]
    assert pair.users_present() == {tab2.user_id: [tab2.peer_id]}


def test_last_peer_leaving_keeps_the_user_with_no_peers_until_grace_ends() -> None:
    pair = CorePair(config(grace=5.0))
    bob = pair.connect("Bob")
    ada = pair.connect("Ada")
    pair.reset_logs()
    pair.disconnect(ada)
    assert pair.diffs() == [
        {"upsert": [{"userId": ada.user_id, "userName": "Ada", "peers": []}], "remove": []}
    ]
    assert pair.users_present() == {bob.user_id: [bob.peer_id], ada.user_id: []}
    assert pair.chat.presence.next_deadline() == pytest.approx(pair.now + 5.0)

    pair.advance(4.9)
    assert len(pair.diffs()) == 1
    assert pair.system_texts() == ["Bob joined", "Ada joined"]

    pair.advance(0.1)
    assert pair.diffs()[-1] == {"upsert": [], "remove": [ada.user_id]}
    assert pair.system_texts()[-1] == "Ada left"
    assert [e.type for e in bob.inbox] == ["presence-diff", "presence-diff", "chat"]
    assert bob.inbox[-1].data["text"] == "Ada left"
    assert pair.users_present() == {bob.user_id: [bob.peer_id]}

    pair.run_for(10, step=1)
    assert pair.system_texts().count("Ada left") == 1


def test_reload_within_grace_is_not_a_leave() -> None:
    pair = CorePair(config(grace=5.0))
    bob = pair.connect("Bob")
    ada = pair.connect("Ada")
    pair.reset_logs()
    pair.disconnect(ada)
    pair.advance(3.0)
    again = pair.connect("Ada")
    pair.run_for(20, step=0.5)
    assert pair.system_texts() == ["Bob joined", "Ada joined"]
    assert all(d["remove"] == [] for d in pair.diffs())
    assert pair.diffs()[-1]["upsert"][0]["peers"][0]["peerId"] == again.peer_id
    assert pair.users_present()[ada.user_id] == [again.peer_id]
    assert bob.events("chat") == []


def test_rejoin_after_grace_is_a_new_join() -> None:
    pair = CorePair(config(grace=1.0))
    ada = pair.connect("Ada")
    pair.disconnect(ada)
    pair.advance(1.0)
    pair.connect("Ada")
    assert pair.system_texts() == ["Ada joined", "Ada left", "Ada joined"]


def test_disconnect_of_an_unknown_peer_does_nothing() -> None:
    pair = CorePair(config())
    assert pair.chat.disconnect("nobody", pair.now) == []


def test_snapshot_lists_users_in_grace_with_no_peers() -> None:
    pair = CorePair(config(grace=5.0))
    ada = pair.connect("Ada")
    pair.disconnect(ada)
    (presence, _bots) = pair.chat.snapshot_events()
    assert presence.data == {"users": [{"userId": ada.user_id, "userName": "Ada", "peers": []}]}


def test_user_name_follows_the_latest_tab() -> None:
    pair = CorePair(config())
    pair.connect("Ada", user_id="u1")
    pair.reset_logs()
    pair.connect("Ada L.", user_id="u1")
    assert pair.diffs()[0]["upsert"][0]["userName"] == "Ada L."


# ------------------------------------------------------------------ batching


def test_batch_coalesces_many_joins_into_one_diff_and_one_message() -> None:
    pair = CorePair(config(batch=0.25))
    names = [f"User{i:02d}" for i in range(14)]
    peers = []
    for name in names:
        peers.append(pair.connect(name))
        pair.advance(0.01)
    # 14 joins in 0.14 s; nothing flushed yet
    assert pair.diffs() == []
    assert pair.history == []
    assert pair.chat.next_deadline() == pytest.approx(1000.25)
    pair.advance(0.25)
    (diff,) = pair.diffs()
    assert sorted(u["userId"] for u in diff["upsert"]) == sorted(p.user_id for p in peers)
    assert diff["remove"] == []
    assert pair.system_texts() == ["User00, User01 and 12 others joined"]
    # every connected peer got exactly one diff and one system message
    for p in peers:
        assert [e.type for e in p.inbox] == ["presence-diff", "chat"]


def test_batch_of_three_names_them_all() -> None:
    pair = CorePair(config(batch=0.25))
    for name in ("Ada", "Bob", "Cy"):
        pair.connect(name)
    pair.advance(0.25)
    assert pair.system_texts() == ["Ada, Bob and Cy joined"]


def test_batch_with_joins_and_leaves_makes_one_diff_and_two_messages() -> None:
    pair = CorePair(config(grace=0.5, batch=0.25))
    ada = pair.connect("Ada")
    bob = pair.connect("Bob")
    pair.advance(0.25)
    pair.reset_logs()
    pair.disconnect(ada)
    pair.disconnect(bob)
    pair.advance(0.5)  # grace over for both: left, and the batch is due
    cy = pair.connect("Cy")
    pair.advance(0.25)
    diffs = pair.diffs()
    assert sum(len(d["remove"]) for d in diffs) == 2
    assert {u for d in diffs for u in d["remove"]} == {ada.user_id, bob.user_id}
    assert [u["userId"] for d in diffs for u in d["upsert"]] == [cy.user_id]
    assert pair.system_texts()[-2:] == ["Ada and Bob left", "Cy joined"]


def test_batch_window_then_a_fresh_window() -> None:
    pair = CorePair(config(batch=0.25))
    pair.connect("Ada")
    pair.advance(0.25)
    pair.advance(1.0)
    pair.connect("Bob")
    assert len(pair.diffs()) == 1
    pair.advance(0.24)
    assert len(pair.diffs()) == 1
    pair.advance(0.01)
    assert len(pair.diffs()) == 2
    assert pair.system_texts() == ["Ada joined", "Bob joined"]


def test_a_user_who_comes_and_goes_within_one_batch_is_only_upserted_once() -> None:
    pair = CorePair(config(grace=5.0, batch=0.25))
    ada = pair.connect("Ada")
    pair.disconnect(ada)
    pair.connect("Ada")
    pair.advance(0.25)
    (diff,) = pair.diffs()
    assert len(diff["upsert"]) == 1
    assert pair.system_texts() == ["Ada joined"]


# ------------------------------------------------- the Presence table itself


def peer(pid: str, uid: str, name: str | None = None) -> Peer:
    return Peer(pid, uid, name or uid.upper(), "ws")


def test_presence_flush_is_none_until_due() -> None:
    table = Presence(grace=1.0, batch=0.5)
    assert table.flush(0.0) is None
    table.add(peer("p1", "a"), 10.0)
    assert table.next_deadline() == 10.5
    assert table.flush(10.4) is None
    flush = table.flush(10.5)
    assert flush is not None
    assert flush.joined == ["A"]
    assert [u["userId"] for u in flush.upsert] == ["a"]
    assert table.flush(11.0) is None
    assert table.next_deadline() is None


def test_presence_expire_needs_the_deadline() -> None:
    table = Presence(grace=1.0, batch=0.0)
    table.add(peer("p1", "a"), 0.0)
    table.flush(0.0)
    table.remove("p1", 1.0)
    assert table.next_deadline() == 1.0  # the flush of the upsert is due now
    table.flush(1.0)
    assert table.next_deadline() == 2.0
    assert table.expire(1.99) == []
    assert "a" in table.users
    assert table.expire(2.0) == ["a"]
    assert "a" not in table.users
    flush = table.flush(2.0)
    assert flush is not None
    assert (flush.remove, flush.left) == (["a"], ["A"])


def test_presence_changed_marks_the_user_dirty() -> None:
    table = Presence(grace=1.0, batch=0.0)
    table.add(peer("p1", "a"), 0.0)
    table.flush(0.0)
    table.changed("p1", 1.0)
    flush = table.flush(1.0)
    assert flush is not None
    assert [u["userId"] for u in flush.upsert] == ["a"]
    assert (flush.joined, flush.left, flush.remove) == ([], [], [])
    table.changed("unknown", 2.0)
    assert table.flush(2.0) is None
