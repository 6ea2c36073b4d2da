"""The transport flag (PROTOCOL §7): which transport a user is assigned."""

from __future__ import annotations

import hashlib

import pytest

from app.core import Assignment, Rollout
from app.core.rollout import bucket

IDS = [f"user-{i}" for i in range(10_000)]


def test_defaults_are_ws_for_everyone() -> None:
    assert Rollout().assign("anyone") == Assignment("ws", "mode")


@pytest.mark.parametrize("mode", ["ws", "sse"])
def test_fixed_modes_assign_everyone_the_same(mode: str) -> None:
    rollout = Rollout(mode=mode, percent=50)  # type: ignore[arg-type]
    assert {rollout.assign(u).transport for u in IDS[:500]} == {mode}
    assert rollout.assign("x").reason == "mode"


def test_bucket_is_sha256_mod_100_and_stable() -> None:
    for user_id in ["", "u1", "Ada", "ünïcode", "x" * 500]:
        digest = hashlib.sha256(user_id.encode()).digest()
        expected = int.from_bytes(digest[:8], "big") % 100
        assert bucket(user_id) == expected
        assert 0 <= bucket(user_id) < 100
    # pinned values: a change here would move users between transports on deploy
    assert [bucket(u) for u in ("u1", "u2", "alice", "bob", "")] == [42, 55, 7, 50, 52]


def test_rollout_uses_the_bucket() -> None:
    rollout = Rollout(mode="rollout", percent=30)
    for user_id in IDS[:1000]:
        got = rollout.assign(user_id)
        assert got.transport == ("ws" if bucket(user_id) < 30 else "sse")
        assert got.reason.startswith("rollout")
        assert str(bucket(user_id)) in got.reason


def test_rollout_0_and_100() -> None:
    none = Rollout(mode="rollout", percent=0)
    every = Rollout(mode="rollout", percent=100)
    assert {none.assign(u).transport for u in IDS} == {"sse"}
    assert {every.assign(u).transport for u in IDS} == {"ws"}


@pytest.mark.parametrize("percent", [1, 10, 25, 50, 90])
def test_distribution_roughly_matches_percent(percent: int) -> None:
    rollout = Rollout(mode="rollout", percent=percent)
    on_ws = sum(rollout.assign(u).transport == "ws" for u in IDS)
    share = on_ws / len(IDS) * 100
    assert abs(share - percent) < 2.0, share


def test_raising_the_percent_only_moves_users_to_ws() -> None:
    before = Rollout(mode="rollout", percent=20)
    after = Rollout(mode="rollout", percent=60)
    for user_id in IDS[:2000]:
        if before.assign(user_id).transport == "ws":
            assert after.assign(user_id).transport == "ws"


def test_assignment_is_stable_between_instances() -> None:
    a = Rollout(mode="rollout", percent=42)
    b = Rollout(mode="rollout", percent=42)
    assert [a.assign(u) for u in IDS[:300]] == [b.assign(u) for u in IDS[:300]]


def test_forced_users() -> None:
    ws_user = next(u for u in IDS if bucket(u) >= 50)  # would be sse by the percent
    sse_user = next(u for u in IDS if bucket(u) < 50)  # would be ws by the percent
    rollout = Rollout(
        mode="rollout", percent=50, ws_users=frozenset({ws_user}), sse_users=frozenset({sse_user})
    )
    assert rollout.assign(ws_user) == Assignment("ws", "ws-user")
    assert rollout.assign(sse_user) == Assignment("sse", "sse-user")


@pytest.mark.parametrize("mode", ["ws", "sse", "rollout"])
def test_forced_users_override_every_mode(mode: str) -> None:
    rollout = Rollout(
        mode=mode,  # type: ignore[arg-type]
        percent=50,
        ws_users=frozenset({"w"}),
        sse_users=frozenset({"s"}),
    )
    assert rollout.assign("w").transport == "ws"
    assert rollout.assign("s").transport == "sse"


def test_sse_users_beats_ws_users() -> None:
    rollout = Rollout(mode="ws", ws_users=frozenset({"u"}), sse_users=frozenset({"u"}))
    assert rollout.assign("u") == Assignment("sse", "sse-user")


@pytest.mark.parametrize("mode", ["ws", "sse", "rollout"])
def test_sse_disabled_puts_everyone_on_ws(mode: str) -> None:
    rollout = Rollout(
        mode=mode,  # type: ignore[arg-type]
        percent=0,
        sse_users=frozenset({"s"}),
        sse_enabled=False,
    )
    for user_id in ["s", *IDS[:200]]:
        assert rollout.assign(user_id) == Assignment("ws", "sse-disabled")
