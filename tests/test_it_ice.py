"""ready.iceServers on both transports: STUN as configured, TURN with fresh credentials."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.clients import aio, asession, open_peer, server_factory

from app.core.ice import turn_credential

SECRET = "ice-test-secret"


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_ready_carries_ice_servers_with_turn_credentials(tmp_path: Path, transport: str) -> None:
    with server_factory(tmp_path) as factory:
        srv = factory(
            ICE_SERVERS="stun:stun.test:3478,turn:turn.test:3478",
            TURN_SECRET=SECRET,
            TURN_TTL="600",
        )

        async def body() -> None:
            user = await asession(srv.http, "Ada")
            before = int(time.time())
            client = await open_peer(transport, srv, user)
            servers = client.ready["iceServers"]
            assert servers[0] == {"urls": ["stun:stun.test:3478"]}
            turn = servers[1]
            expires, _, who = turn["username"].partition(":")
            assert who == user.userId
            assert before + 600 <= int(expires) <= int(time.time()) + 601
            assert turn["credential"] == turn_credential(SECRET, user.userId, int(expires))[1]

        aio(body)()
