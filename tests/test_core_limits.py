"""Rate limits per user (across tabs) and the WebSocket heartbeat timeout."""

from __future__ import annotations

from typing import Any

from support.corepair import CorePair, FakePeer

from app.core import ChatConfig, Close, Peer
from app.core.ratelimit import Bucket, Rate


def chat(text: str, ref: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "chat", "data": {"text": text}}
    if ref is not None:
        obj["ref"] = ref
    return obj


def bye(to: str) -> dict[str, Any]:
    return {"type": "webrtc-signal", "data": {"to": to, "signal": {"type": "bye"}}}


def codes(replies: list[Any]) -> list[str]:
    return [r.data["code"] if r.type == "error" else r.type for r in replies]


# ------------------------------------------------------------------- Bucket


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    bucket = Bucket(Rate(per_second=2, burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.25) is False  # half a token
    assert bucket.take(0.5) is True  # one token after 0.5 s at 2/s
    assert bucket.take(0.5) is False
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = Bucket(Rate(1, 1), now=10.0)
    assert bucket.take(10.0) is True
    assert bucket.take(5.0) is False
    assert bucket.take(5.5) is False


# --------------------------------------------------------------- chat limits


def limited_pair() -> CorePair:
    return CorePair(
        ChatConfig(
            presence_batch=0,
            rate_chat=Rate(1, 3),
            rate_signal=Rate(1, 5),
            rate_other=Rate(1, 2),
        )
    )


def test_chat_is_rate_limited_with_ref_and_nothing_is_stored() -> None:
    pair = limited_pair()
    ada = pair.connect("Ada")
    bob = pair.connect("Bob")
    pair.reset_logs()
    replies = [ada.send(chat(f"m{i}", ref=f"r{i}"))[0] for i in range(5)]
    assert codes(replies) == ["ack", "ack", "ack", "rate_limited", "rate_limited"]
    assert replies[3].data["ref"] == "r3"
    assert len(bob.events("chat")) == 3
    pair.advance(1.0)
    assert codes(ada.send(chat("later", ref="x"))) == ["ack"]


def test_chat_limit_is_per_user_across_tabs() -> None:
    pair = limited_pair()
    tab1 = pair.connect("Ada")
    tab2 = pair.connect("Ada")
    bob = pair.connect("Bob")
    results = [tab.send(chat("x", ref="r"))[0] for tab in (tab1, tab2, tab1, tab2)]
    assert codes(results) == ["ack", "ack", "ack", "rate_limited"]
    # another user has a bucket of their own
    assert codes(bob.send(chat("y", ref="r"))) == ["ack"]


def test_chat_limit_applies_to_posts_of_the_same_user() -> None:
    pair = limited_pair()
    ada = pair.connect("Ada", transport="sse")
    for _ in range(3):
        assert codes(ada.post("chat", {"text": "x"})) == ["ack"]
    (err,) = ada.post("chat", {"text": "x"}, ref="p")
    assert (err.data["code"], err.data["ref"]) == ("rate_limited", "p")


def test_signals_have_their_own_bucket() -> None:
    pair = limited_pair()
    ada = pair.connect("Ada")
    bob = pair.connect("Bob")
    for _ in range(3):
        ada.send(chat("x"))
    assert codes(ada.send(chat("x"))) == ["rate_limited"]
    # chat is exhausted, signals still go through, up to their own burst
    for _ in range(5):
        assert ada.send(bye(bob.peer_id)) == []
    assert codes(ada.send(bye(bob.peer_id))) == ["rate_limited"]
    assert len(bob.events("webrtc-signal")) == 5


def test_other_types_share_the_other_bucket() -> None:
    pair = limited_pair()
    ada = pair.connect("Ada")
    assert codes(ada.send({"type": "ping", "ref": "1"})) == ["pong"]
    assert codes(ada.send({"type": "typing", "data": {"isTyping": True}, "ref": "2"})) == ["ack"]
    (err,) = ada.send({"type": "ping", "ref": "3"})
    assert (err.data["code"], err.data["ref"]) == ("rate_limited", "3")
    # chat has its own bucket
    assert codes(ada.send(chat("x", ref="4"))) == ["ack"]


def test_default_chat_burst_is_20() -> None:
    pair = CorePair()
    ada = pair.connect("Ada")
    results = [ada.send(chat(f"m{i}", ref="r"))[0] for i in range(21)]
    assert codes(results) == ["ack"] * 20 + ["rate_limited"]
    pair.advance(0.2)  # 5/s → one token
    assert codes(ada.send(chat("again", ref="r"))) == ["ack"]


# ----------------------------------------------------------------- heartbeat


def hb_pair(timeout: float = 10.0) -> CorePair:
    return CorePair(ChatConfig(presence_batch=0, heartbeat_timeout=timeout))


def closes_of(pair: CorePair, fake: FakePeer) -> list[Close]:
    return [c for c in pair.closes if c.peer_id == fake.peer_id]


def test_silent_ws_peer_is_closed_4408_after_heartbeat_timeout() -> None:
    pair = hb_pair(10.0)
    ada = pair.connect("Ada")
    start = pair.now
    pair.run_for(9.9, step=0.1)
    assert pair.closes == []
    while not pair.closes and pair.now < start + 20:
        pair.advance(0.1)
    assert closes_of(pair, ada) == [Close(ada.peer_id, 4408, "heartbeat-timeout")]
    # the scan runs at least every min(1 s, timeout/4): the close is at most ~1 s late
    assert start + 10.0 < pair.now <= start + 11.05
    assert ada.closed == (4408, "heartbeat-timeout")
    # the rig disconnects it like the transport would: the user is leaving
    assert pair.users_present() == {ada.user_id: []}


def test_any_frame_keeps_a_ws_peer_alive() -> None:
    pair = hb_pair(10.0)
    ada = pair.connect("Ada")
    for _ in range(5):
        pair.run_for(8.0, step=0.5)
        ada.send({"type": "ping"})
    bad = ada.send("not an object")  # even a bad frame proves the peer alive
    assert bad[0].data["code"] == "bad_json"
    pair.run_for(8.0, step=0.5)
    assert pair.closes == []
    pair.run_for(4.0, step=0.5)
    assert closes_of(pair, ada) == [Close(ada.peer_id, 4408, "heartbeat-timeout")]


def test_sse_peers_never_time_out() -> None:
    pair = hb_pair(10.0)
    ada = pair.connect("Ada", transport="sse")
    pair.run_for(100.0, step=1.0)
    assert pair.closes == []
    assert ada.connected
    assert pair.chat.next_deadline() is None


def test_only_the_silent_peer_is_closed() -> None:
    pair = hb_pair(10.0)
    quiet = pair.connect("Quiet")
    chatty = pair.connect("Chatty")
    for _ in range(30):
        pair.advance(0.5)
        chatty.send({"type": "ping"})
    assert [c.peer_id for c in pair.closes] == [quiet.peer_id]
    assert chatty.connected


def test_a_chatty_peer_older_than_a_silent_one_is_kept_and_the_silent_one_closed() -> None:
    """The scan walks peers oldest-heard first and stops at the first one heard in time."""
    pair = hb_pair(10.0)
    chatty = [pair.connect(f"Chatty{i}") for i in range(3)]
    quiet = pair.connect("Quiet")
    late = pair.connect("Late")
    for step in range(40):
        pair.advance(0.5)
        for c in chatty:
            c.send({"type": "ping"})
        if step < 10:
            late.send({"type": "ping"})
    assert [c.peer_id for c in pair.closes] == [quiet.peer_id, late.peer_id]
    assert all(c.connected for c in chatty)


def test_heartbeat_close_is_reported_once() -> None:
    pair = hb_pair(10.0)
    core = pair.chat
    core.connect(Peer("p1", "u1", "Ada", "ws"), 0.0)
    closes = [o for t in range(0, 40) for o in core.tick(float(t)) if isinstance(o, Close)]
    assert closes == [Close("p1", 4408, "heartbeat-timeout")]


def test_next_deadline_covers_the_heartbeat_scan() -> None:
    pair = hb_pair(10.0)
    pair.connect("Ada")
    pair.tick()
    deadline = pair.chat.next_deadline()
    assert deadline is not None
    assert pair.now < deadline <= pair.now + 2.5  # timeout/4
