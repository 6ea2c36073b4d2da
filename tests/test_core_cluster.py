"""Several processes, one chat: ``Publish`` facts and ``Chat.apply``.

The rig runs two cores that share one store, one fan-out and one clock; each
``Publish`` of one node is applied by the other. A change must reach clients
once (broadcast by the node that made it) and both tables must agree.
"""

from __future__ import annotations

import pytest
from support.corepair import CorePair

from app.core import Append, Broadcast, ChatConfig
from app.core.facts import fact_from_wire


def cluster(grace: float = 5.0, batch: float = 0.0) -> CorePair:
    return CorePair(ChatConfig(presence_grace=grace, presence_batch=batch), nodes=2)


def tables_agree(pair: CorePair) -> None:
    assert pair.users_present(0) == pair.users_present(1)


def test_nodes_get_their_own_names_and_peers_carry_them() -> None:
    pair = cluster()
    ada = pair.connect("Ada", node=0)
    bob = pair.connect("Bob", node=1)
    assert [p.peer_id for p in pair.chats[0].local_peers()] == [ada.peer_id]
    assert [p.peer_id for p in pair.chats[1].local_peers()] == [bob.peer_id]
    assert pair.chats[1].presence.peers[ada.peer_id].node == pair.chats[0].config.node


def test_joins_on_two_nodes_are_announced_once_each() -> None:
    pair = cluster()
    ada = pair.connect("Ada", node=0)
    bob = pair.connect("Bob", node=1)
    tables_agree(pair)
    assert pair.users_present(0) == {ada.user_id: [ada.peer_id], bob.user_id: [bob.peer_id]}
    assert pair.system_texts() == ["Ada joined", "Bob joined"]
    assert len(pair.diffs()) == 2
    assert [f.kind for f in pair.published] == ["peer-up", "peer-up"]


def test_second_tab_on_another_node_is_not_a_join() -> None:
    pair = cluster()
    tab1 = pair.connect("Ada", node=0)
    tab2 = pair.connect("Ada", node=1)
    assert pair.system_texts() == ["Ada joined"]
    (user,) = pair.diffs()[-1]["upsert"]
    assert [p["peerId"] for p in user["peers"]] == [tab1.peer_id, tab2.peer_id]
    tables_agree(pair)


def test_leave_is_announced_once_by_the_node_that_held_the_last_peer() -> None:
    pair = cluster(grace=1.0)
    watcher = pair.connect("Watcher", node=1, transport="sse")
    ada = pair.connect("Ada", node=0, transport="sse")
    pair.reset_logs()
    pair.disconnect(ada)
    pair.run_for(3.0, step=0.25)
    assert pair.system_texts().count("Ada left") == 1
    removes = [d for d in pair.diffs() if d["remove"]]
    assert removes == [{"upsert": [], "remove": [ada.user_id]}]
    assert [f.kind for f in pair.published] == ["peer-down", "user-gone"]
    tables_agree(pair)
    assert pair.users_present(1) == {watcher.user_id: [watcher.peer_id]}


def test_reload_onto_the_other_node_within_grace_is_silent() -> None:
    pair = cluster(grace=2.0)
    pair.connect("Watcher", node=1, transport="sse")
    ada = pair.connect("Ada", node=0, transport="sse")
    pair.disconnect(ada)
    pair.advance(1.0)
    again = pair.connect("Ada", node=1, transport="sse")
    pair.run_for(5.0, step=0.25)
    assert pair.system_texts() == ["Watcher joined", "Ada joined"]
    assert all(d["remove"] == [] for d in pair.diffs())
    tables_agree(pair)
    assert pair.users_present(0)[ada.user_id] == [again.peer_id]


def test_signal_reaches_a_peer_on_the_other_node() -> None:
    pair = cluster()
    ada = pair.connect("Ada", node=0)
    bob = pair.connect("Bob", node=1)
    pair.reset_logs()
    ada.send({"type": "webrtc-signal", "data": {"to": bob.peer_id, "signal": {"type": "bye"}}})
    (event,) = bob.inbox
    assert event.type == "webrtc-signal"
    assert event.data["from"] == ada.peer_id
    assert ada.inbox == []


def test_media_state_and_bot_toggle_reach_the_other_node_silently() -> None:
    pair = cluster()
    ada = pair.connect("Ada", node=0)
    pair.connect("Bob", node=1)
    pair.reset_logs()
    ada.send({"type": "media-state", "data": {"camera": True}})
    assert pair.chats[1].presence.peers[ada.peer_id].camera is True
    assert len(pair.diffs()) == 1  # only node 0 broadcast it
    ada.send({"type": "bot-toggle", "data": {"bot": "pip", "enabled": False}})
    assert pair.chats[1].bots["pip"].enabled is False
    assert pair.broadcast_types().count("bot-state") == 1
    assert pair.chats[0].bot_state_event() == pair.chats[1].bot_state_event()


def test_typing_is_broadcast_once_and_expires_once() -> None:
    pair = cluster()
    ada = pair.connect("Ada", node=0, transport="sse")
    bob = pair.connect("Bob", node=1, transport="sse")
    pair.reset_logs()
    ada.send({"type": "typing", "data": {"isTyping": True}})
    pair.run_for(6.0, step=0.5)
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True, False]


def test_chat_on_the_other_node_clears_typing_once() -> None:
    pair = cluster()
    ada0 = pair.connect("Ada", node=0, transport="sse")
    pair.connect("Ada", node=1, transport="sse")
    bob = pair.connect("Bob", node=1, transport="sse")
    pair.reset_logs()
    ada0.send({"type": "typing", "data": {"isTyping": True}})
    pair.post(ada0.identity, "chat", {"text": "hi"}, node=1)  # the POST lands on node 1
    pair.run_for(10.0, step=0.5)
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True, False]


def test_typing_renewed_on_the_other_node_is_not_cleared_early() -> None:
    pair = cluster()
    tab0 = pair.connect("Ada", node=0, transport="sse")
    tab1 = pair.connect("Ada", node=1, transport="sse")
    bob = pair.connect("Bob", node=0, transport="sse")
    pair.reset_logs()
    tab0.send({"type": "typing", "data": {"isTyping": True}})
    pair.advance(4.0)
    tab1.send({"type": "typing", "data": {"isTyping": True}})  # still typing, other tab
    pair.advance(2.0)  # 6 s after the first keystroke, 2 s after the renewal
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True]
    pair.run_for(10.0, step=0.5)
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True, False]


def test_reap_makes_a_dead_nodes_peers_leave() -> None:
    pair = cluster(grace=1.0)
    pair.connect("Watcher", node=0, transport="sse")
    bob = pair.connect("Bob", node=1, transport="sse")
    pair.reset_logs()
    pair.carry_out(pair.chats[0].reap(pair.chats[1].config.node, pair.now), None, 0)
    assert bob.peer_id not in pair.chats[0].presence.peers
    pair.run_for(2.0, step=0.25)
    assert pair.system_texts()[-1] == "Bob left"
    assert bob.user_id not in pair.users_present(0)


@pytest.mark.parametrize(
    "fact",
    [
        {},
        {"f": "nonsense"},
        {"f": "peer-up"},
        {"f": "peer-up", "peer": "p1"},
        {"f": "peer-up", "peer": []},
        {"f": "peer-up", "peer": {"peerId": "p9"}},
        {"f": "peer-down"},
        {"f": "user-gone"},
        {"f": "typing", "userId": "u-x", "on": True},
        {"f": "bot", "name": "sol"},
        {"f": "bot", "name": "hal", "enabled": False},
    ],
)
def test_malformed_or_unknown_facts_are_ignored(fact: dict[str, object]) -> None:
    pair = cluster()
    ada = pair.connect("Ada", node=0)
    before = (pair.users_present(1), pair.chats[1].bot_state_event(), pair.chats[1].next_deadline())
    decoded = fact_from_wire(fact)  # the broker's edge drops what it cannot read
    assert decoded is None or pair.chats[1].apply(decoded, pair.now) == []
    after = (pair.users_present(1), pair.chats[1].bot_state_event(), pair.chats[1].next_deadline())
    assert after == before
    assert ada.peer_id in pair.chats[1].presence.peers


def test_tabs_closing_on_two_nodes_at_once_still_leave() -> None:
    pair = cluster(grace=1.0)
    watcher = pair.connect("Watcher", node=0, transport="sse")
    tab0 = pair.connect("Ada", node=0, transport="sse")
    tab1 = pair.connect("Ada", node=1, transport="sse")
    pair.hold_facts = True  # the broker is a few ms behind: both closes cross
    pair.disconnect(tab0)
    pair.disconnect(tab1)
    pair.deliver_facts()
    pair.hold_facts = False
    pair.run_for(5.0, step=0.25)
    assert pair.users_present(0) == {watcher.user_id: [watcher.peer_id]}
    assert pair.users_present(1) == {watcher.user_id: [watcher.peer_id]}
    assert pair.system_texts().count("Ada left") == 1


# -------------------------------------------------------------------- resync


def test_resync_adds_missing_peers_and_drops_vanished_ones() -> None:
    pair = cluster()
    ada0 = pair.connect("Ada", node=0, transport="sse")
    ada1 = pair.connect("Ada", node=1, transport="sse")
    pair.hold_facts = True  # the link breaks
    bob = pair.connect("Bob", node=1, transport="sse")
    pair.disconnect(ada1)
    pair.drop_facts()
    pair.hold_facts = False
    assert bob.peer_id not in pair.chats[0].presence.peers
    assert ada1.peer_id in pair.chats[0].presence.peers
    facts = [p.fact() for p in pair.chats[1].local_peers()]
    outputs = pair.chats[0].resync(facts, pair.now)
    # node 0's clients missed Bob's arrival and Ada's second tab leaving: one
    # presence-diff upserts both users as they are now; no system message
    diffs = [o.event.data for o in outputs if isinstance(o, Broadcast)]
    assert [sorted(u["userId"] for u in d["upsert"]) for d in diffs] == [
        sorted([ada0.user_id, bob.user_id])
    ]
    assert not any(isinstance(o, Append) for o in outputs)
    tables_agree(pair)
    assert pair.users_present(0) == {ada0.user_id: [ada0.peer_id], bob.user_id: [bob.peer_id]}


def test_resync_after_a_user_left_during_the_outage_forgets_the_user() -> None:
    pair = cluster(grace=1.0)
    watcher = pair.connect("Watcher", node=0, transport="sse")
    ada = pair.connect("Ada", node=1, transport="sse")
    pair.hold_facts = True  # the link breaks
    pair.disconnect(ada)
    pair.run_for(2.0, step=0.25)  # node 1 ends Ada's grace, its user-gone is lost
    pair.drop_facts()
    pair.hold_facts = False
    facts = [p.fact() for p in pair.chats[1].local_peers()]
    pair.carry_out(pair.chats[0].resync(facts, pair.now), None, 0)
    pair.run_for(5.0, step=0.25)
    assert pair.users_present(0) == {watcher.user_id: [watcher.peer_id]}
    assert pair.system_texts().count("Ada left") == 1  # node 1's, not repeated
