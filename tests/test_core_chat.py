"""The chat core's message handling: chat, acks, typing, signals, bots, clear, ping, errors."""

from __future__ import annotations

from typing import Any

import pytest
from support.corepair import CorePair, FakePeer

from app.core import (
    Append,
    AskBot,
    Broadcast,
    Chat,
    ChatConfig,
    ClientError,
    Event,
    Identity,
    Peer,
    Publish,
    Reply,
    SaveBotState,
)
from app.core.facts import BotToggled
from app.core.messages import AiRequest, Auth, BotToggle
from app.core.messages import Chat as ChatMessage


def chat(text: str, client_id: str | None = None, ref: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"text": text}
    if client_id is not None:
        data["clientId"] = client_id
    obj: dict[str, Any] = {"type": "chat", "data": data}
    if ref is not None:
        obj["ref"] = ref
    return obj


def only(events: list[Event], type_: str | None = None) -> Event:
    if type_ is not None:
        events = [e for e in events if e.type == type_]
    assert len(events) == 1, events
    return events[0]


@pytest.fixture
def pair() -> CorePair:
    return CorePair()


@pytest.fixture
def ada(pair: CorePair) -> FakePeer:
    return pair.connect("Ada")


@pytest.fixture
def bob(pair: CorePair, ada: FakePeer) -> FakePeer:
    peer = pair.connect("Bob")
    pair.reset_logs()
    return peer


# -------------------------------------------------------------------- chat


def test_chat_returns_a_draft_not_a_broadcast() -> None:
    core = Chat(ChatConfig(presence_batch=0), clock=lambda: 12.345)
    user = Identity("u1", "Ada")
    out = core.receive(user, None, ChatMessage("hello", "c1", "r1"), 12.345)
    assert len(out) == 1
    assert isinstance(out[0], Append)
    draft = out[0].draft
    assert draft.type == "chat"
    assert (draft.user_id, draft.client_id, draft.ref) == ("u1", "c1", "r1")
    assert draft.data == {
        "id": draft.id,
        "ts": 12345,
        "kind": "user",
        "userId": "u1",
        "userName": "Ada",
        "text": "hello",
        "clientId": "c1",
    }
    assert len(draft.id) >= 16


def test_committed_chat_is_broadcast_with_seq_then_acked() -> None:
    core = Chat(ChatConfig(presence_batch=0))
    (append,) = core.receive(Identity("u1", "Ada"), None, ChatMessage("hi", "c1", "r1"), 0)
    assert isinstance(append, Append)
    out = core.committed(append.draft, 41)
    assert len(out) == 2
    assert isinstance(out[0], Broadcast)
    assert out[0].event.seq == 41
    assert out[0].event.envelope()["seq"] == 41
    assert out[0].event.data["seq"] == 41
    assert out[0].event.data["text"] == "hi"
    assert out[1] == Reply(
        Event("ack", {"clientId": "c1", "id": append.draft.id, "seq": 41, "ref": "r1"})
    )


def test_chat_is_broadcast_to_everyone_and_acked_to_the_sender(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    replies = ada.send(chat("hello", "c1", ref="r1"))
    ack = only(replies)
    assert ack.type == "ack"
    msg = only(bob.inbox, "chat")
    assert msg.seq == pair.seq
    assert ack.data == {"clientId": "c1", "id": msg.data["id"], "seq": msg.seq, "ref": "r1"}
    assert msg.data["text"] == "hello"
    assert msg.data["userId"] == ada.user_id
    assert msg.data["userName"] == "Ada"
    assert msg.data["kind"] == "user"
    assert msg.data["clientId"] == "c1"
    assert msg.data["ts"] == int(pair.now * 1000)
    # the sender sees its own message once, then its ack
    assert [e.type for e in ada.inbox] == ["chat", "ack"]
    assert ada.inbox[0] == msg


def test_chat_without_ref_is_still_acked_by_client_id(ada: FakePeer, bob: FakePeer) -> None:
    ack = only(ada.send(chat("hi", "c9")))
    assert ack.type == "ack"
    assert ack.data["clientId"] == "c9"
    assert "ref" not in ack.data


def test_seqs_strictly_increase(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    for i in range(5):
        ada.send(chat(f"m{i}", f"c{i}"))
        bob.send(chat(f"n{i}"))
    seqs = [e.seq for e in bob.events("chat")]
    assert len(seqs) == 10
    assert all(s is not None for s in seqs)
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 10


def test_duplicate_client_id_is_acked_with_the_first_id_and_not_broadcast(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    first = only(ada.send(chat("hello", "same", ref="a")))
    broadcasts = len(pair.broadcasts)
    again = only(ada.send(chat("hello again", "same", ref="b")))
    assert again.type == "ack"
    assert again.data == {
        "clientId": "same",
        "id": first.data["id"],
        "seq": first.data["seq"],
        "ref": "b",
    }
    assert len(pair.broadcasts) == broadcasts
    assert len(bob.events("chat")) == 1
    assert len(pair.history) == 1 + 2  # two join messages before it


def test_committed_duplicate_does_not_broadcast() -> None:
    core = Chat(ChatConfig(presence_batch=0))
    (append,) = core.receive(Identity("u1", "Ada"), None, ChatMessage("hi", "c1", None), 0)
    assert isinstance(append, Append)
    out = core.committed(append.draft, 3, first_id="first")
    assert out == [Reply(Event("ack", {"clientId": "c1", "id": "first", "seq": 3}))]


def test_same_client_id_from_another_user_is_a_new_message(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    a = only(ada.send(chat("one", "same")))
    b = only(bob.send(chat("two", "same")))
    assert a.data["id"] != b.data["id"]
    assert b.data["seq"] > a.data["seq"]
    assert [e.data["text"] for e in bob.events("chat")] == ["one", "two"]


def test_same_client_id_from_a_second_tab_of_the_same_user_is_a_duplicate(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    tab2 = pair.connect("Ada")
    first = only(ada.send(chat("x", "k")))
    dup = only(tab2.send(chat("x", "k")))
    assert dup.data["id"] == first.data["id"]
    assert len(bob.events("chat")) == 1


def test_chat_without_client_id_acks_with_null_client_id(ada: FakePeer, bob: FakePeer) -> None:
    ack = only(ada.send(chat("hi", ref="r")))
    assert ack.data["clientId"] is None
    assert "clientId" not in only(bob.events("chat")).data


def test_system_drafts_are_not_acked() -> None:
    core = Chat(ChatConfig(presence_batch=0))
    out = core.connect(Peer("p1", "u1", "Ada", "ws"), 0)
    appends = [o for o in out if isinstance(o, Append)]
    assert len(appends) == 1
    done = core.committed(appends[0].draft, 1)
    assert len(done) == 1
    assert isinstance(done[0], Broadcast)


def test_post_chat_from_a_user_without_a_stream_is_stored_and_broadcast(
    pair: CorePair, ada: FakePeer
) -> None:
    pair.reset_logs()
    ghost = pair.identity("Ghost")
    replies = pair.post(ghost, "chat", {"text": "boo", "clientId": "g1"}, ref="p")
    ack = only(replies)
    assert ack.type == "ack"
    assert ack.data["clientId"] == "g1"
    assert ack.data["ref"] == "p"
    msg = only(ada.inbox, "chat")
    assert msg.data["userName"] == "Ghost"
    assert ack.data["seq"] == msg.seq


# ------------------------------------------------------------------ typing


def typing(on: bool, ref: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "typing", "data": {"isTyping": on}}
    if ref is not None:
        obj["ref"] = ref
    return obj


def test_typing_is_broadcast_on_change_only(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    assert ada.send(typing(True)) == []
    assert ada.send(typing(True)) == []  # a renewal is silent
    assert ada.send(typing(False)) == []
    assert ada.send(typing(False)) == []  # already off
    events = bob.events("typing")
    assert [e.data for e in events] == [
        {"userId": ada.user_id, "userName": "Ada", "isTyping": True},
        {"userId": ada.user_id, "userName": "Ada", "isTyping": False},
    ]
    assert [e.data["isTyping"] for e in ada.events("typing")] == [True, False]


def test_typing_with_ref_is_acked(ada: FakePeer) -> None:
    assert ada.send(typing(True, ref="t1")) == [Event("ack", {"ref": "t1"})]


def test_typing_auto_clears_after_timeout(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    timeout = pair.config.typing_timeout
    ada.send(typing(True))
    assert pair.chat.next_deadline() is not None
    assert pair.chat.next_deadline() <= pair.now + timeout
    pair.advance(timeout - 0.01)
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True]
    pair.advance(0.01)
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True, False]
    assert bob.events("typing")[-1].data["userName"] == "Ada"
    pair.advance(timeout * 3)
    assert len(bob.events("typing")) == 2


def test_typing_renewal_pushes_the_deadline(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    timeout = pair.config.typing_timeout
    ada.send(typing(True))
    pair.advance(timeout * 0.8)
    ada.send(typing(True))
    pair.advance(timeout * 0.8)  # 1.6 timeouts after the first, 0.8 after the renewal
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True]
    pair.advance(timeout * 0.2)
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True, False]


def test_chat_clears_typing_before_the_message(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    ada.send(typing(True))
    ada.send(chat("done typing"))
    assert [(e.type, e.data.get("isTyping")) for e in bob.inbox] == [
        ("typing", True),
        ("typing", False),
        ("chat", None),
    ]
    pair.advance(pair.config.typing_timeout * 2)
    assert len(bob.events("typing")) == 2  # no second clear from the timer


def test_chat_while_not_typing_sends_no_typing(ada: FakePeer, bob: FakePeer) -> None:
    ada.send(chat("hi"))
    assert bob.events("typing") == []


def test_typing_is_per_user_across_tabs(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    tab2 = pair.connect("Ada")
    pair.reset_logs()
    ada.send(typing(True))
    tab2.send(typing(True))
    tab2.send(typing(False))
    assert [e.data["isTyping"] for e in bob.events("typing")] == [True, False]


def test_typing_of_two_users_expires_independently(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    timeout = pair.config.typing_timeout
    ada.send(typing(True))
    pair.advance(1.0)
    bob.send(typing(True))
    pair.advance(timeout - 1.0)
    cleared = [e.data["userId"] for e in bob.events("typing") if not e.data["isTyping"]]
    assert cleared == [ada.user_id]
    pair.advance(1.0)
    cleared = [e.data["userId"] for e in bob.events("typing") if not e.data["isTyping"]]
    assert cleared == [ada.user_id, bob.user_id]


# ------------------------------------------------------------ webrtc-signal


def signal(to: str, ref: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"to": to, "signal": {"type": "offer", "sdp": "v=0"}, **extra}
    obj: dict[str, Any] = {"type": "webrtc-signal", "data": data}
    if ref is not None:
        obj["ref"] = ref
    return obj


def test_signal_goes_only_to_the_target_peer(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    carol = pair.connect("Carol")
    bob_tab2 = pair.connect("Bob")
    pair.reset_logs()
    assert ada.send(signal(bob.peer_id)) == []
    assert carol.inbox == []
    assert bob_tab2.inbox == []
    assert ada.inbox == []
    assert pair.broadcasts == []
    got = only(bob.inbox)
    assert got.type == "webrtc-signal"
    assert got.seq is None
    assert got.data == {
        "from": ada.peer_id,
        "fromUser": {"userId": ada.user_id, "userName": "Ada"},
        "signal": {"type": "offer", "sdp": "v=0"},
        "stream": "camera",
    }


def test_signal_with_ref_is_acked_and_screen_stream_is_kept(ada: FakePeer, bob: FakePeer) -> None:
    replies = ada.send(signal(bob.peer_id, ref="s1", stream="screen"))
    assert replies == [Event("ack", {"ref": "s1"})]
    assert only(bob.inbox).data["stream"] == "screen"


def test_signal_from_field_is_set_by_the_server(ada: FakePeer, bob: FakePeer) -> None:
    msg = signal(bob.peer_id, **{"from": bob.peer_id, "fromUser": {"userId": "x"}})
    msg["data"]["signal"]["from"] = "forged"
    ada.send(msg)
    got = only(bob.inbox).data
    assert got["from"] == ada.peer_id
    assert got["fromUser"] == {"userId": ada.user_id, "userName": "Ada"}
    assert "from" not in got["signal"]


def test_signal_to_unknown_peer_is_not_found(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    err = only(ada.send(signal("nobody", ref="s")))
    assert err == Event("error", {"code": "not_found", "message": err.data["message"], "ref": "s"})
    assert pair.sends == []


def test_signal_to_a_peer_that_left_is_not_found(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    pair.disconnect(bob)
    assert only(ada.send(signal(bob.peer_id))).data["code"] == "not_found"


def test_post_signal_naming_another_users_peer_is_forbidden(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    data = signal(ada.peer_id)["data"]
    err = only(pair.post(ada.identity, "webrtc-signal", data, ref="x", peer_id=bob.peer_id))
    assert (err.type, err.data["code"], err.data["ref"]) == ("error", "forbidden", "x")
    assert pair.sends == []


def test_post_signal_without_peer_id_uses_the_users_only_peer(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    data = signal(bob.peer_id)["data"]
    assert pair.post(ada.identity, "webrtc-signal", data) == []
    assert only(bob.inbox).data["from"] == ada.peer_id


def test_post_signal_from_a_user_with_no_stream_is_not_found(pair: CorePair, bob: FakePeer) -> None:
    data = signal(bob.peer_id)["data"]
    err = only(pair.post(pair.identity("Ghost"), "webrtc-signal", data, ref="g"))
    assert (err.data["code"], err.data["ref"]) == ("not_found", "g")
    assert bob.inbox == []


def test_post_signal_with_several_tabs_and_no_peer_id_is_invalid(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    pair.connect("Ada")
    data = signal(bob.peer_id)["data"]
    err = only(pair.post(ada.identity, "webrtc-signal", data, ref="t"))
    assert (err.data["code"], err.data["ref"]) == ("invalid", "t")


def test_peer_of(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    assert pair.chat.peer_of(ada.user_id, ada.peer_id) is ada.peer
    assert pair.chat.peer_of(ada.user_id, None) is ada.peer
    with pytest.raises(ClientError) as info:
        pair.chat.peer_of(ada.user_id, bob.peer_id)
    assert info.value.code == "forbidden"
    with pytest.raises(ClientError) as info:
        pair.chat.peer_of(ada.user_id, "p-unknown")
    assert info.value.code == "not_found"
    with pytest.raises(ClientError) as info:
        pair.chat.peer_of("u-nobody", None)
    assert info.value.code == "not_found"


# ------------------------------------------------------- media-state, ready


def test_media_state_is_stored_and_broadcast_as_presence_diff(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    replies = ada.send({"type": "media-state", "data": {"camera": True}, "ref": "m"})
    assert replies == [Event("ack", {"ref": "m"})]
    assert (ada.peer.camera, ada.peer.mic, ada.peer.screen) == (True, False, False)
    diff = only(bob.inbox, "presence-diff").data
    assert diff["remove"] == []
    (user,) = diff["upsert"]
    assert user["userId"] == ada.user_id
    assert user["peers"] == [
        {
            "peerId": ada.peer_id,
            "transport": "ws",
            "media": {"camera": True, "mic": False, "screen": False},
            "ready": False,
        }
    ]
    ada.send({"type": "media-state", "data": {"mic": True, "screen": True}})
    assert (ada.peer.camera, ada.peer.mic, ada.peer.screen) == (True, True, True)
    assert len(bob.events("presence-diff")) == 2
    assert pair.system_texts() == ["Ada joined", "Bob joined"]  # no chat noise


def test_media_state_upsert_lists_all_the_users_tabs(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    tab2 = pair.connect("Ada", transport="sse")
    pair.reset_logs()
    tab2.post("media-state", {"screen": True})
    (user,) = only(bob.inbox, "presence-diff").data["upsert"]
    by_peer = {p["peerId"]: p for p in user["peers"]}
    assert set(by_peer) == {ada.peer_id, tab2.peer_id}
    assert by_peer[tab2.peer_id]["media"]["screen"] is True
    assert by_peer[tab2.peer_id]["transport"] == "sse"
    assert by_peer[ada.peer_id]["media"]["screen"] is False


def test_ready_marks_the_peer_once(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    assert ada.send({"type": "ready", "data": {}, "ref": "r"}) == [Event("ack", {"ref": "r"})]
    assert ada.peer.ready is True
    (user,) = only(bob.inbox, "presence-diff").data["upsert"]
    assert user["peers"][0]["ready"] is True
    ada.send({"type": "ready"})
    assert len(bob.events("presence-diff")) == 1


def test_post_ready_for_another_users_peer_is_forbidden(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    err = only(pair.post(ada.identity, "ready", {}, peer_id=bob.peer_id))
    assert err.data["code"] == "forbidden"
    assert bob.peer.ready is False


def test_post_media_state_without_a_stream_is_not_found(pair: CorePair, ada: FakePeer) -> None:
    err = only(pair.post(pair.identity("Ghost"), "media-state", {"mic": True}, ref="q"))
    assert (err.data["code"], err.data["ref"]) == ("not_found", "q")


# --------------------------------------------------------------------- bots


def test_bot_toggle_saves_and_broadcasts_bot_state(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    replies = ada.send({"type": "bot-toggle", "data": {"bot": "sol", "enabled": False}, "ref": "b"})
    assert replies == [Event("ack", {"ref": "b"})]
    assert pair.saved_bots == {"sol": False}
    state = only(bob.inbox, "bot-state").data
    assert state == {
        "bots": [
            {"name": "sol", "displayName": "Sol", "personality": "sunny", "enabled": False},
            {"name": "pip", "displayName": "Pip", "personality": "curious", "enabled": True},
            {"name": "noor", "displayName": "Noor", "personality": "calm", "enabled": False},
        ]
    }
    ada.send({"type": "bot-toggle", "data": {"bot": "noor", "enabled": True}})
    assert pair.saved_bots == {"sol": False, "noor": True}
    assert pair.chat.bot_state_event().data["bots"][2]["enabled"] is True


def test_bot_toggle_order_of_outputs() -> None:
    pair = CorePair()
    out = pair.chat.receive(Identity("u", "U"), None, BotToggle("pip", False, "r"), pair.now)
    assert [type(o) for o in out] == [SaveBotState, Publish, Broadcast, Reply]
    assert out[0] == SaveBotState("pip", False)
    assert out[1] == Publish(BotToggled("pip", False))


def test_unknown_bot_is_not_found(pair: CorePair, ada: FakePeer, bob: FakePeer) -> None:
    err = only(
        ada.send({"type": "bot-toggle", "data": {"bot": "hal", "enabled": True}, "ref": "h"})
    )
    assert (err.data["code"], err.data["ref"]) == ("not_found", "h")
    assert pair.saved_bots == {}
    assert bob.inbox == []


def test_snapshot_events_are_presence_then_bot_state(pair: CorePair, ada: FakePeer) -> None:
    presence, bots = pair.chat.snapshot_events()
    assert presence.type == "presence"
    assert [u["userId"] for u in presence.data["users"]] == [ada.user_id]
    assert bots == pair.chat.bot_state_event()
    assert [b["name"] for b in bots.data["bots"]] == ["sol", "pip", "noor"]


# -------------------------------------------------------------- clear, ai


def test_clear_appends_a_durable_clear_by_the_user(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    replies = ada.send({"type": "clear", "data": {}, "ref": "c"})
    event = only(bob.inbox, "clear")
    assert event.seq == pair.seq
    assert event.data["by"] == {"userId": ada.user_id, "userName": "Ada"}
    assert event.data["ts"] == int(pair.now * 1000)
    assert event.data["seq"] == event.seq
    assert replies == [Event("ack", {"seq": event.seq, "ref": "c"})]
    assert pair.history[-1] == event


def test_clear_without_ref_is_silent_to_the_sender(ada: FakePeer, bob: FakePeer) -> None:
    assert ada.send({"type": "clear"}) == []
    assert len(bob.events("clear")) == 1


def test_ai_request_without_provider_is_ai_unavailable(
    pair: CorePair, ada: FakePeer, bob: FakePeer
) -> None:
    assert pair.config.ai_available is False
    err = only(ada.send({"type": "ai-request", "data": {"prompt": "hi"}, "ref": "ai"}))
    assert err.type == "error"
    assert (err.data["code"], err.data["ref"]) == ("ai_unavailable", "ai")
    assert bob.inbox == []
    assert pair.asks == []
    with pytest.raises(ClientError) as info:
        pair.chat.receive(ada.identity, ada.peer_id, AiRequest("x", "sol", "q"), pair.now)
    assert (info.value.code, info.value.ref) == ("ai_unavailable", "q")


def test_ai_request_for_unknown_bot_is_not_found(pair: CorePair, ada: FakePeer) -> None:
    err = only(ada.send({"type": "ai-request", "data": {"prompt": "hi", "bot": "hal"}, "ref": "x"}))
    assert (err.data["code"], err.data["ref"]) == ("not_found", "x")


@pytest.fixture
def ai_pair() -> CorePair:
    return CorePair(ChatConfig(presence_batch=0, ai_available=True))


def test_ai_request_asks_the_named_bot(ai_pair: CorePair) -> None:
    ada = ai_pair.connect("Ada")
    msg = {"type": "ai-request", "data": {"prompt": " why? ", "bot": "pip"}, "ref": "q"}
    assert ada.send(msg) == []  # the bot service answers, not the core
    assert ai_pair.asks == [AskBot("pip", "why?", ada.user_id, "Ada", "q")]


def test_ai_request_without_bot_asks_the_first_enabled_bot(ai_pair: CorePair) -> None:
    ada = ai_pair.connect("Ada")
    ai_pair.post(ada.identity, "bot-toggle", {"bot": "sol", "enabled": False})
    ada.send({"type": "ai-request", "data": {"prompt": "hi"}})
    assert [a.bot for a in ai_pair.asks] == ["pip"]


def test_ai_request_for_a_disabled_bot_is_ai_unavailable(ai_pair: CorePair) -> None:
    ada = ai_pair.connect("Ada")
    err = only(ada.send({"type": "ai-request", "data": {"prompt": "hi", "bot": "noor"}}))
    assert err.data["code"] == "ai_unavailable"
    for name in ("sol", "pip"):
        ai_pair.post(ada.identity, "bot-toggle", {"bot": name, "enabled": False})
    err = only(ada.send({"type": "ai-request", "data": {"prompt": "hi"}, "ref": "n"}))
    assert (err.data["code"], err.data["ref"]) == ("ai_unavailable", "n")
    assert ai_pair.asks == []


def test_auth_after_authentication_is_invalid(pair: CorePair, ada: FakePeer) -> None:
    with pytest.raises(ClientError) as info:
        pair.chat.receive(ada.identity, ada.peer_id, Auth("tok", None, None, "a"), pair.now)
    assert (info.value.code, info.value.ref) == ("invalid", "a")


# --------------------------------------------------------------------- ping


@pytest.mark.parametrize("t", [None, 0, 1.5, 1_700_000_000_000, "abc"])
def test_ping_is_answered_with_pong_t(ada: FakePeer, bob: FakePeer, t: object) -> None:
    data = {} if t is None else {"t": t}
    assert ada.send({"type": "ping", "data": data}) == [Event("pong", {"t": t})]
    assert bob.inbox == []


def test_errors_keep_the_connection_usable(ada: FakePeer, bob: FakePeer) -> None:
    assert only(ada.send("garbage")).data["code"] == "bad_json"
    assert only(ada.send({"type": "nope"})).data["code"] == "unknown_type"
    assert only(ada.send(chat("still here", "c"))).type == "ack"
    assert only(bob.events("chat")).data["text"] == "still here"


# --------------------------------------------------------------- ready event


def test_ready_event_carries_identity_and_limits(pair: CorePair, ada: FakePeer) -> None:
    event = pair.chat.ready_event(
        ada.peer, epoch="e1", last_seq=7, recovered=True, ice_servers=[{"urls": "stun:x"}]
    )
    assert event.type == "ready"
    assert event.seq is None
    assert event.data == {
        "userId": ada.user_id,
        "userName": "Ada",
        "peerId": ada.peer_id,
        "transport": "ws",
        "epoch": "e1",
        "lastSeq": 7,
        "recovered": True,
        "heartbeatInterval": pair.config.heartbeat_interval,
        "iceServers": [{"urls": "stun:x"}],
        "limits": {
            "maxMessageBytes": 65536,
            "maxTextChars": 4000,
            "historyLimit": 256,
            "typingTimeout": pair.config.typing_timeout,
            "presenceGrace": pair.config.presence_grace,
            "heartbeatTimeout": pair.config.heartbeat_timeout,
        },
    }
