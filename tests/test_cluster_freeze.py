"""A process that stalls past the reap bound and comes back (issue 7).

A process frozen (SIGSTOP here; in production a VM freeze, CPU starvation or a
long GC pause) stops heartbeating, so the others reap its users as if it had
died. When it wakes up, its clients are still connected: their users must come
back on every process. Its own small cluster, with ``NODE_TTL=1`` to be quick.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from pathlib import Path

import pytest
from support.clients import WsClient, aio, asession, uniq, user_entry
from support.cluster import cluster, redis_db
from support.server import Server

pytestmark = pytest.mark.redis

FROZEN_BUG = (
    "server bug: a process stalled past the reap bound (SIGSTOP here; a VM freeze, "
    "CPU starvation or a long GC pause alike) comes back to the peer-down facts the "
    "reaper published for ITS OWN live peers and applies them (app/core/chat.py, "
    "Chat.apply 'peer-down' removes local peers too), so its heartbeat stops "
    "re-registering them and nobody re-announces them: users still connected to it "
    "stay invisible on every process, signals to them are not_found and their own "
    "media-state is not_found, until they reconnect"
)


def test_a_process_frozen_past_the_reap_bound_gets_its_users_back(tmp_path: Path) -> None:
    with redis_db() as url, cluster(tmp_path, url, 2, NODE_TTL="1") as servers:
        aio(functools.partial(_frozen, servers), timeout=40)()


async def _frozen(nodes: list[Server]) -> None:
    a, b = nodes
    on_a = await WsClient.open(a, await asession(a.http, uniq("Awake")))
    user = await asession(b.http, uniq("Frozen"))
    on_b = await WsClient.open(b, user)
    await on_a.expect("presence-diff", lambda d: user_entry(d["upsert"], user.userId) is not None)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGSTOP)
    try:  # reaped like a dead process (2 x NODE_TTL + heartbeats + grace: ~5 s)
        await on_a.expect("presence-diff", lambda d: user.userId in d["remove"], timeout=15)
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # its client never noticed: the socket stayed open, and it still chats
    assert (await on_b.chat("I never left")).ok

    # within a few heartbeats of waking up, the process gives its users back
    media = {"camera": True, "mic": False, "screen": False}
    deadline = time.monotonic() + 5
    while True:
        mine = await on_b.request("media-state", media)
        signal_to = await on_a.request(
            "webrtc-signal", {"to": on_b.peer_id, "signal": {"type": "offer", "sdp": "v=0"}}
        )
        if (mine.ok and signal_to.ok) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert mine.ok, f"its own tab is unknown to it: {mine}"
    assert signal_to.ok, f"the other process cannot reach it: {signal_to}"
    late = await WsClient.open(a, await asession(a.http, uniq("late")))
    assert user_entry(late.presence["users"], user.userId) is not None, late.presence
