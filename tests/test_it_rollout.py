"""The transport rollout flag (PROTOCOL §7): /api/transport, 4403, and SSE as fallback.

The users are minted on the shared server; every server here has the same secret,
so their tokens work everywhere, and their userIds can go into the force lists
before a server starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.clients import (
    Session,
    SseClient,
    WsClient,
    aio,
    asession,
    build_server,
    server_factory,
    session,
    shared_server,
    start_all,
    sync_http,
)
from support.server import Server


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> list[Session]:
    mint = shared_server(tmp_path_factory)
    with sync_http() as http:
        return [session(mint.http, http=http) for _ in range(40)]


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, users: list[Session]
) -> Iterator[dict[str, Server]]:
    """One server per flag setting, started side by side."""
    picked = users[0].userId
    settings: dict[str, dict[str, str]] = {
        "sse": {"TRANSPORT": "sse"},
        "sse-disabled": {"SSE_ENABLED": "false"},
        "rollout-50": {"TRANSPORT": "rollout", "WS_ROLLOUT_PERCENT": "50"},
        "rollout-0": {"TRANSPORT": "rollout", "WS_ROLLOUT_PERCENT": "0", "WS_USERS": picked},
        "rollout-100": {
            "TRANSPORT": "rollout",
            "WS_ROLLOUT_PERCENT": "100",
            "SSE_USERS": f"someone-else,{picked}",
        },
    }
    servers = {
        name: build_server(tmp_path_factory.mktemp(name), values)
        for name, values in settings.items()
    }
    try:
        start_all(list(servers.values()))
        yield servers
    finally:
        for srv in servers.values():
            srv.stop(timeout=5)


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    with server_factory(tmp_path) as factory:
        yield factory


def transports(srv: Server, users: list[Session]) -> dict[str, str]:
    """``GET /api/transport`` for each user: userId -> "ws" | "sse"."""
    out = {}
    with sync_http() as http:
        for user in users:
            resp = http.get(f"{srv.http}/api/transport", headers=user.bearer)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["transport"] in ("ws", "sse"), body
            assert isinstance(body["reason"], str), body
            out[user.userId] = str(body["transport"])
    return out


async def ws_outcome(srv: Server, user: Session) -> str:
    """``ready``, or ``4403`` if a WebSocket ``auth`` of ``user`` is refused as it should be."""
    client = await WsClient.connect(srv.ws, user)
    await client.auth(user.token, settle=False)
    env = await client.expect_any(("ready",), or_closed=True)
    if env is not None:
        await client.close()
        return "ready"
    assert client.close_code == 4403, client.close_code
    assert client.close_reason == "transport-disabled"
    assert client.seen("ready") == [], "closed right after auth, before ready"
    return "4403"


async def assert_assigned(srv: Server, user: Session, expected: str) -> None:
    assert transports(srv, [user]) == {user.userId: expected}
    assert await ws_outcome(srv, user) == ("ready" if expected == "ws" else "4403")


@aio
async def test_transport_sse_refuses_websocket_with_4403_and_sse_works(
    fleet: dict[str, Server],
) -> None:
    srv = fleet["sse"]
    user = await asession(srv.http)
    assert user.transport == "sse"
    await assert_assigned(srv, user, "sse")
    sse = await SseClient.open(srv, user)
    assert (await sse.chat("over sse")).ok
    # the token is checked first: a bad one is 4401, not 4403
    client = await WsClient.connect(srv.ws)
    await client.send("auth", {"token": "junk"})
    code, _ = await client.wait_closed()
    assert code == 4401


def test_rollout_percent_is_a_stable_split(
    fleet: dict[str, Server], users: list[Session], new_server: Any
) -> None:
    srv = fleet["rollout-50"]
    first = transports(srv, users)
    assert set(first.values()) == {"ws", "sse"}, "50% of 40 users: both transports in use"
    assert transports(srv, users) == first, "stable while running"
    ws_user = next(u for u in users if first[u.userId] == "ws")
    sse_user = next(u for u in users if first[u.userId] == "sse")
    fresh = session(srv.http)
    assert fresh.transport == transports(srv, [fresh])[fresh.userId], "session agrees"

    async def check_split() -> None:
        await assert_assigned(srv, ws_user, "ws")
        await assert_assigned(srv, sse_user, "sse")

    aio(check_split)()

    # another process, each list forcing one user against the hash: they flip, and
    # everyone else keeps their lot (the hash is stable across processes, not hash())
    other = new_server(
        TRANSPORT="rollout",
        WS_ROLLOUT_PERCENT="50",
        WS_USERS=f"nobody,{sse_user.userId}",
        SSE_USERS=ws_user.userId,
    )
    now = transports(other, users)
    assert now.pop(sse_user.userId) == "ws"
    assert now.pop(ws_user.userId) == "sse"
    assert now == {k: v for k, v in first.items() if k in now}, "stable across processes"

    async def check_forced() -> None:
        await assert_assigned(other, sse_user, "ws")
        await assert_assigned(other, ws_user, "sse")

    aio(check_forced)()


@aio
async def test_rollout_0_and_100_with_forced_users(
    fleet: dict[str, Server], users: list[Session]
) -> None:
    picked, rest = users[0], users[1:]
    now = transports(fleet["rollout-0"], users)
    assert now.pop(picked.userId) == "ws"
    assert set(now.values()) == {"sse"}
    await assert_assigned(fleet["rollout-0"], picked, "ws")
    await assert_assigned(fleet["rollout-0"], rest[0], "sse")

    srv = fleet["rollout-100"]
    now = transports(srv, users)
    assert now.pop(picked.userId) == "sse"
    assert set(now.values()) == {"ws"}
    await assert_assigned(srv, picked, "sse")
    await assert_assigned(srv, rest[0], "ws")
    # a rolled-back user falls back to SSE and still shares the chat with WS users
    fallback = await SseClient.open(srv, picked)
    peer = await WsClient.open(srv, rest[0])
    assert (await fallback.chat("from the fallback", "fb-1")).ok
    await peer.expect("chat", lambda d: d.get("clientId") == "fb-1")


@aio
async def test_sse_disabled_refuses_the_stream_with_403(fleet: dict[str, Server]) -> None:
    srv = fleet["sse-disabled"]
    user = await asession(srv.http)
    client = await SseClient.connect(srv.http, user)
    assert client.status == 403
    assert client.body["code"] == "forbidden", client.body
    assert isinstance(client.body["message"], str)
    assert "detail" not in client.body
    ws = await WsClient.open(srv, user)
    assert (await ws.chat("ws still works")).ok
