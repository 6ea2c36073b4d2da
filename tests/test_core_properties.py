"""Property tests: the parser's error contract and the presence invariants."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.corepair import CorePair

from app.core import ChatConfig, ClientError, parse
from app.core.errors import CODES
from app.core.messages import ClientMessage
from app.core.presence import Peer, Presence

# ------------------------------------------------------------------- parse

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

FIELDS: dict[str, list[str]] = {
    "auth": ["token", "lastSeq", "epoch"],
    "chat": ["text", "clientId"],
    "typing": ["isTyping"],
    "webrtc-signal": ["to", "signal", "stream"],
    "media-state": ["camera", "mic", "screen"],
    "bot-toggle": ["bot", "enabled"],
    "clear": [],
    "ai-request": ["prompt", "bot"],
    "ping": ["t"],
    "ready": [],
}
SIGNAL_KEYS = ["type", "sdp", "candidate"]
PLAUSIBLE = JSON | st.sampled_from(["offer", "answer", "candidate", "bye", "camera", "screen"])


def envelope(type_: str, data: Any, ref: Any) -> dict[str, Any]:
    return {"type": type_, "data": data, "ref": ref}


def data_for(type_: str) -> st.SearchStrategy[dict[str, Any]]:
    fields = FIELDS[type_]
    if not fields:
        return st.dictionaries(st.text(max_size=5), JSON, max_size=3)
    values: dict[str, st.SearchStrategy[Any]] = {name: PLAUSIBLE for name in fields}
    if type_ == "webrtc-signal":
        signal = st.fixed_dictionaries({}, optional={key: PLAUSIBLE for key in SIGNAL_KEYS}) | JSON
        values["signal"] = signal
        values["to"] = st.text(min_size=1, max_size=8) | JSON
    return st.fixed_dictionaries({}, optional=values)


def message(types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(types).flatmap(
        lambda t: st.builds(
            envelope, st.just(t), data_for(t), st.none() | st.text(max_size=70) | JSON
        )
    )


def check_parse(obj: object) -> None:
    try:
        msg: ClientMessage = parse(obj)
    except ClientError as exc:
        assert exc.code in CODES
        assert exc.ref is None or (isinstance(exc.ref, str) and len(exc.ref) <= 64)
        if isinstance(obj, dict) and isinstance(obj.get("ref"), str) and len(obj["ref"]) <= 64:
            assert exc.ref == obj["ref"]
    else:
        assert isinstance(msg, ClientMessage)
        if isinstance(obj, dict):
            assert msg.ref == obj.get("ref")


@given(JSON)
def test_parse_of_any_json_raises_only_client_error(obj: object) -> None:
    check_parse(obj)


@given(st.dictionaries(st.sampled_from(["type", "data", "ref"]), JSON | st.text(max_size=15)))
def test_parse_of_any_envelope_raises_only_client_error(obj: dict[str, Any]) -> None:
    check_parse(obj)


SAFE_TYPES = [t for t in FIELDS if t != "webrtc-signal"]


@settings(max_examples=400)
@given(message(SAFE_TYPES))
def test_parse_of_typed_messages_raises_only_client_error(obj: dict[str, Any]) -> None:
    check_parse(obj)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(message(["webrtc-signal"]))
@example({"type": "webrtc-signal", "data": {"to": "p1", "signal": {"type": []}}, "ref": "r"})
def test_parse_of_signals_raises_only_client_error(obj: dict[str, Any]) -> None:
    check_parse(obj)


# ---------------------------------------------------------------- presence

# An op: ("add", user index) | ("remove", peer pick) | ("wait", seconds)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 4)),
        st.tuples(st.just("remove"), st.integers(0, 1000)),
        st.tuples(st.just("wait"), st.sampled_from([0.0, 0.05, 0.1, 0.3, 1.0, 3.0])),
    ),
    max_size=40,
)
GRACE = st.sampled_from([0.0, 0.5, 2.0])
BATCH = st.sampled_from([0.0, 0.25])


def apply_diff(users: dict[str, Any], diff: dict[str, Any]) -> None:
    for user in diff["upsert"]:
        users[user["userId"]] = user
    for user_id in diff["remove"]:
        users.pop(user_id, None)


@settings(max_examples=200, deadline=None)
@given(OPS, GRACE, BATCH)
def test_presence_settles_to_users_with_peers(
    ops: list[tuple[str, Any]], grace: float, batch: float
) -> None:
    pair = CorePair(ChatConfig(presence_grace=grace, presence_batch=batch))
    watcher = pair.connect("Watcher", transport="sse")
    open_peers = [watcher]
    for op, arg in ops:
        if op == "add":
            open_peers.append(pair.connect(f"U{arg}", transport="sse"))
        elif op == "remove" and len(open_peers) > 1:
            pair.disconnect(open_peers.pop(1 + arg % (len(open_peers) - 1)))
        elif op == "wait":
            pair.advance(arg)
        # always: every listed peer is in its user's entry and vice versa
        table = pair.chat.presence
        assert set(table.peers) == {p for u in table.users.values() for p in u.peers}
        assert {p.peer_id for p in open_peers} == set(table.peers)
    pair.advance(grace + batch + 0.01)
    pair.advance(batch + 0.01)

    with_peers: dict[str, set[str]] = {}
    for fake in open_peers:
        with_peers.setdefault(fake.user_id, set()).add(fake.peer_id)
    present = {u: set(peers) for u, peers in pair.users_present().items()}
    assert present == with_peers

    # a client that applies every diff to an empty list ends with the server's snapshot
    seen: dict[str, Any] = {}
    for event in watcher.inbox:
        if event.type == "presence-diff":
            apply_diff(seen, event.data)
    snapshot = {u["userId"]: u for u in pair.chat.presence.snapshot()}
    assert seen == snapshot
    assert pair.chat.presence.next_deadline() is None


@settings(max_examples=300, deadline=None)
@given(OPS, GRACE, BATCH)
def test_presence_announces_each_user_alternately(
    ops: list[tuple[str, Any]], grace: float, batch: float
) -> None:
    """At every flush, (joins - leaves) announced so far is 1 for present users, else 0."""
    table = Presence(grace, batch)
    now = 0.0
    peers: list[Peer] = []
    ids = iter(range(10_000))
    announced: Counter[str] = Counter()

    def settle() -> None:
        table.expire(now)
        flush = table.flush(now)
        if flush is None:
            return
        announced.update(flush.joined)
        announced.subtract(flush.left)
        for name in {*announced, *(u.upper() for u in table.users)}:
            assert announced[name] == (1 if name.lower() in table.users else 0), name
        assert set(flush.remove).isdisjoint(u["userId"] for u in flush.upsert)

    for op, arg in ops:
        if op == "add":
            peer = Peer(f"p{next(ids)}", f"u{arg}", f"U{arg}", "sse")
            peers.append(peer)
            table.add(peer, now)
        elif op == "remove" and peers:
            table.remove(peers.pop(arg % len(peers)).peer_id, now)
        elif op == "wait":
            now += arg
        settle()
    now += grace + batch + 0.01
    settle()
    now += batch + 0.01
    settle()
    assert set(table.users) == {p.user_id for p in peers}
