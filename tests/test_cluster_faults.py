"""Faults of a three-process cluster on one Redis (issue 7).

The tests share one cluster and run in file order: a Redis restart with the
traffic paused while Redis returns, a SIGKILL (the killed process is started
again by the next test), and last the Redis restart with traffic straight
through it, which the server does not survive yet (xfail: a server bug).
A process frozen past the reap bound: see test_cluster_freeze.py.

- A process SIGKILLed mid-traffic: no acked message is lost, and the others
  report its users ``left`` within the documented bound (docs/deployment.md):
  ``NODE_TTL`` (6 s) + one heartbeat (2 s) + the missing window (``NODE_TTL``)
  + ``PRESENCE_GRACE``, under 30 s.
- Redis restarted mid-traffic (the machine's shared Redis, which keeps nothing
  on disk): errors or 1012/1013 closes while it is away, nothing acked that was
  not stored, and the service comes back by itself, in a new epoch.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from support.clients import SseClient, WsClient, aio, asession, uniq, user_entry
from support.cluster import (
    StreamRecorder,
    Talker,
    barrier,
    close_info,
    cluster,
    redis_db,
    redis_outage,
    revive,
    start_redis,
    wait_closed,
)
from support.server import Server

pytestmark = pytest.mark.redis

FAST_CHAT = {"RATE_CHAT": "100", "RATE_CHAT_BURST": "100"}
NODE_TTL = 6.0
HEARTBEAT_EVERY = 2.0
PRESENCE_GRACE = 1.0
OUTAGE = 1.5  # at least this long without Redis
LEAVE_BOUND = NODE_TTL + HEARTBEAT_EVERY + NODE_TTL + PRESENCE_GRACE  # 15 s documented


async def until(cond: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll a condition that no single event signals (several talkers' counts)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Server], str]]:
    settings = {"PRESENCE_GRACE": str(PRESENCE_GRACE), **FAST_CHAT}
    with (
        redis_db() as url,
        cluster(tmp_path_factory.mktemp("faults"), url, 3, **settings) as servers,
    ):
        yield servers, url


# -------------------------------------------------------------- Redis restart


def test_redis_restart_mid_traffic_service_resumes_by_itself(
    nodes: tuple[list[Server], str],
) -> None:
    servers, url = nodes
    revive(servers)
    aio(functools.partial(_redis_restart, servers, url, False), timeout=60)()


# ------------------------------------------------------------------- SIGKILL


def test_sigkilled_process_loses_no_acked_message_and_its_users_leave(
    nodes: tuple[list[Server], str],
) -> None:
    servers, _ = nodes
    revive(servers)
    aio(functools.partial(_sigkill, servers), timeout=60)()


async def _sigkill(nodes: list[Server]) -> None:
    a, b, c = nodes
    on_a = await WsClient.open(a, await asession(a.http, uniq("StayA")))
    on_b = await SseClient.open(b, await asession(b.http, uniq("StayB")))
    doomed_users = [await asession(c.http, uniq(f"Doomed{t}")) for t in ("ws", "sse")]
    doomed = [await WsClient.open(c, doomed_users[0]), await SseClient.open(c, doomed_users[1])]
    for user, client in zip(doomed_users, doomed, strict=True):
        await on_a.expect(
            "presence-diff",
            lambda d, u=user, p=client.peer_id: any(
                x["peerId"] == p
                for x in (user_entry(d.get("upsert", []), u.userId) or {}).get("peers", [])
            ),
        )
    start = await barrier(on_a, [on_a, on_b, *doomed])

    talkers = [
        Talker(client, name, every=0.05, timeout=5).start()
        for client, name in ((on_a, "A"), (on_b, "B"), (doomed[0], "Cws"), (doomed[1], "Csse"))
    ]
    await until(lambda: all(len(t.acked) >= 5 for t in talkers), "traffic flowing", 10)

    killed_at = time.monotonic()
    c.kill()  # SIGKILL: no 1012, no peer-down facts, no goodbye at all
    for client in doomed:
        await asyncio.wait_for(client.closed.wait(), 5)
    await asyncio.gather(*(t.stop() for t in talkers[2:]))

    # the survivors report both users of the dead process gone, while still talking
    gone = {u.userId for u in doomed_users}
    names = {u.userName for u in doomed_users}
    left_at: dict[str, float] = {}
    for watcher, label in ((on_a, "A"), (on_b, "B")):
        removed: set[str] = set()
        while removed != gone:
            remaining = 30 - (time.monotonic() - killed_at)
            env = await watcher.expect(
                "presence-diff", lambda d: bool(gone & set(d.get("remove", []))), remaining
            )
            removed |= gone & set(env["data"]["remove"])
        left_at[label] = time.monotonic() - killed_at
    elapsed = max(left_at.values())
    print(
        f"\n[cluster] SIGKILLed process: its users removed after {elapsed:.1f}s "
        f"(A {left_at['A']:.1f}s, B {left_at['B']:.1f}s; documented bound {LEAVE_BOUND:.0f}s, "
        "asserted < 30s)"
    )
    assert elapsed < 30

    await asyncio.gather(*(t.stop() for t in talkers[:2]))
    end = await barrier(on_a, [on_a, on_b])

    # "left" announced once, as durable system messages naming both users
    for watcher in (on_a, on_b):
        lefts = [
            e["data"]["text"]
            for e in watcher.durable
            if e["type"] == "chat" and e["data"]["kind"] == "system" and "left" in e["data"]["text"]
        ]
        mentioned = [n for n in names for text in lefts if n in text]
        assert sorted(mentioned) == sorted(names), lefts

    # both survivors saw one identical, gapless order
    # (up to the barrier: a bot's late reply may still be on its way to one of them)
    window_a = [(e["seq"], e["data"].get("id")) for e in on_a.durable if start < e["seq"] <= end]
    window_b = [(e["seq"], e["data"].get("id")) for e in on_b.durable if start < e["seq"] <= end]
    assert window_a == window_b
    assert [s for s, _ in window_a] == list(range(start + 1, end + 1))

    # no acked message lost, the dead process's acks included
    delivered = dict((i, s) for s, i in window_a)
    acked = [s for t in talkers for s in t.acked]
    lost = [
        (s.client_id, s.reply.data)  # type: ignore[union-attr]
        for s in acked
        if delivered.get(s.reply.data["id"]) != s.reply.data["seq"]  # type: ignore[union-attr]
    ]
    assert not lost, lost
    doomed_acks = sum(len(t.acked) for t in talkers[2:])
    assert doomed_acks >= 10
    print(
        f"[cluster] {len(acked)} acked messages ({doomed_acks} by the killed process), "
        "all delivered to the survivors' clients"
    )

    # a newcomer anywhere does not see them
    for node in (a, b):
        late = await WsClient.open(node, await asession(node.http, uniq("late")))
        assert not gone & {u["userId"] for u in late.presence["users"]}, late.presence


# ---------------------------------------- Redis restart, traffic straight through


EPOCH_BUG = (
    "server bug: RedisStore.append sets self._epoch from the script's reply, and "
    "RedisStore.tail detects a wiped Redis only by comparing the epoch in Redis with "
    "that same self._epoch (app/backends/redis.py): when a process appends a chat "
    "before its tail retries, the reset goes unnoticed, the tail keeps its old seq, "
    "and that process's clients are never closed with 1012 and silently miss the new "
    "epoch's first seqs"
)


def test_redis_restart_with_traffic_through_its_return_resumes_by_itself(
    nodes: tuple[list[Server], str],
) -> None:
    """Like the first test, but the clients keep sending while Redis comes back.

    Last in the file: when it fails, some processes are left on a stale tail.
    """
    servers, url = nodes
    revive(servers)
    aio(functools.partial(_redis_restart, servers, url, True), timeout=60)()


async def _redis_restart(nodes: list[Server], url: str, through: bool) -> None:
    recorder = StreamRecorder(url)
    try:
        await _restart_under_traffic(nodes, recorder.start(), through)
    finally:
        await recorder.close()


async def _restart_under_traffic(
    nodes: list[Server], recorder: StreamRecorder, through: bool
) -> None:
    """Redis goes away under traffic and comes back empty; check every client's side."""
    a, b, c = nodes
    users = [await asession(n.http, uniq(f"R{i}")) for i, n in enumerate(nodes)]
    clients: list[WsClient | SseClient] = [
        await WsClient.open(a, users[0]),
        await SseClient.open(b, users[1]),
        await WsClient.open(c, users[2]),
    ]
    old_epoch = clients[0].ready["epoch"]
    talkers = [
        Talker(client, name, every=0.05, timeout=20).start()
        for client, name in zip(clients, "ABC", strict=True)
    ]
    try:
        await until(lambda: all(len(t.acked) >= 3 for t in talkers), "traffic flowing", 10)

        with redis_outage():
            down_at = time.monotonic()
            # a newcomer is told to come back later: 1013 on both transports
            probe = await WsClient.connect(b.ws)
            await probe.auth(users[1].token, settle=False)
            assert await probe.wait_closed(20) == (1013, "store-unavailable")
            sse_probe = await SseClient.connect(c.http, users[2], settle=False)
            await asyncio.wait_for(sse_probe.closed.wait(), 20)
            assert close_info(sse_probe) == (1013, "store-unavailable"), sse_probe.comments
            assert not sse_probe.seen("ready")
            async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
                for node in nodes:
                    resp = await http.get(f"{node.http}/readyz")
                    assert resp.status_code == 503, (node.port, resp.text)
            # the connected ones get errors for what they send, never a false ack
            await until(
                lambda: (
                    all(t.errors(since=down_at) for t in talkers)
                    and time.monotonic() - down_at > OUTAGE
                ),
                "errors while down",
                25,
            )
            if not through:
                await asyncio.gather(*(t.stop() for t in talkers))
            start_redis()
            up_at = time.monotonic()
        outage = up_at - down_at

        # history was lost with Redis: every client is closed to resync (1012)
        for client in clients:
            code = await wait_closed(client, 6, " although Redis came back empty")
            assert code == (1012, "history-reset"), (client.transport, code)
        resumed_at = time.monotonic() - up_at
        await asyncio.gather(*(t.stop() for t in talkers))
    finally:
        for t in talkers:
            t.halt()

    # they come back (to another process each) and are told: not recovered, new epoch
    again: list[WsClient | SseClient] = []
    for old, node in zip(clients, (b, c, a), strict=True):
        user = old.user
        assert user is not None
        if old.transport == "ws":
            new: WsClient | SseClient = await WsClient.open(
                node, user, last_seq=old.last_seq, epoch=old_epoch
            )
        else:
            new = await SseClient.open(
                node, user, params={"lastSeq": str(old.last_seq), "epoch": old_epoch}
            )
        assert new.ready["recovered"] is False, new.ready
        assert new.ready["epoch"] != old_epoch
        assert new.history is not None
        again.append(new)
    async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
        for node in nodes:
            assert (await http.get(f"{node.http}/readyz")).status_code == 200
    epochs = {c.ready["epoch"] for c in again}
    assert len(epochs) == 1, epochs

    # new messages flow to the clients on every process, in one order
    start = await barrier(again[0], again, timeout=10)
    sent = []
    for client in again:
        reply = await client.chat(f"after the restart, from {client.transport}")
        assert reply.ok, reply
        sent.append(reply.data)
    end = await barrier(again[-1], again)
    windows = [
        [(e["seq"], e["data"].get("id")) for e in x.durable if e["seq"] > start] for x in again
    ]
    assert all(w == windows[0] for w in windows), windows
    assert [s for s, _ in windows[0]] == list(range(start + 1, end + 1))
    assert {r["id"] for r in sent} <= {i for _, i in windows[0]}

    # nothing was acked that was not stored: every ack names a stream entry
    await until(lambda: all(r["id"] in recorder.entries for r in sent), "recorder catching up", 5)
    acked = [s.reply.data for t in talkers for s in t.acked] + sent  # type: ignore[union-attr]
    await recorder.close()
    unstored = [d for d in acked if recorder.entries.get(d["id"]) != d["seq"]]
    assert not unstored, unstored
    errors = sum(len(t.errors()) for t in talkers)
    print(
        f"\n[cluster] Redis down {outage:.1f}s: {errors} sends refused, "
        f"{len(acked)} acked (all stored); clients closed 1012 {resumed_at:.1f}s after "
        "Redis came back, resumed with recovered=false in a new epoch"
    )
