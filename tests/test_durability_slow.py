"""Slow consumers (issue 3): bounded memory, 4409 / stream end, resume, no presence flap.

A consumer that stops reading is made real: its socket has a tiny receive buffer and
its client library stops pulling frames, so the server's writes back up. Meanwhile
three users chat at full speed (large texts) and read everything. The server's RSS
is sampled from ``/proc/<pid>/status`` before, during and after; the figures are
printed (``pytest -s``) and written to ``test-artifacts/slow-consumer.txt``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.clients import SseClient, WsClient, aio, asession, room_users, server_factory, uniq
from support.faults import (
    ARTIFACTS,
    MB,
    SMALL_RCVBUF,
    Blaster,
    Drained,
    RawSse,
    RssSampler,
    StalledWs,
    rss_bytes,
    wait_for,
)
from support.server import Server

SETTINGS = {
    "BACKEND": "sqlite",
    "OUTBOUND_QUEUE": "64",
    "RATE_CHAT": "100000",
    "RATE_CHAT_BURST": "100000",
    "HISTORY_LIMIT": "20000",
}
SENDERS = 3
PER_SENDER = 3200
TEXT = 3900  # characters per chat: a ~4 KB frame
GROWTH_LIMIT = 15 * MB
REPORT = ARTIFACTS / "slow-consumer.txt"


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    with server_factory(tmp_path) as factory:
        yield factory


@pytest.fixture(scope="module", autouse=True)
def _fresh_report() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    REPORT.write_text("")


def _report(lines: list[str]) -> None:
    text = "\n".join(lines)
    print("\n" + text)
    with REPORT.open("a") as out:
        out.write(text + "\n\n")


async def _stall(srv: Server, transport: str) -> tuple[StalledWs | RawSse, str]:
    """A slow user's tab that has been greeted and then stops reading; its epoch."""
    user = await asession(srv.http, uniq("slow"))
    if transport == "ws":
        ws = await StalledWs.open(srv, user)
        ready = await asyncio.wait_for(ws.ws.recv(), 5)  # the greeting, then nothing
        assert '"type":"ready"' in str(ready)
        epoch = str(json.loads(ready)["data"]["epoch"])
        return ws, epoch
    sse = await RawSse.open(srv, user, rcvbuf=SMALL_RCVBUF, read=False)
    # see it greeted without reading its socket: another tab's presence shows it
    probe = await WsClient.open(srv, await asession(srv.http, uniq("probe")))
    users = {u["userId"] for u in probe.presence["users"]}
    epoch = str(probe.ready["epoch"])
    await probe.close()
    assert user.userId in users, "the stalled SSE tab was never attached"
    return sse, epoch


async def _blasters(srv: Server, count: int = SENDERS) -> list[Blaster]:
    return [await Blaster.open(srv, await asession(srv.http, uniq("fast"))) for _ in range(count)]


def _check_prefix(drained: Drained, head: int) -> None:
    """The stalled tab got a gapless prefix of history, then nothing more."""
    seqs = drained.seqs
    assert seqs, "the stalled tab got no durable event at all"
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "the prefix has gaps"
    assert seqs[-1] < head, "the stalled tab got everything: it was never slow"


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_slow_consumer_memory_stays_bounded_and_it_is_cut(
    new_server: Callable[..., Server], transport: str
) -> None:
    srv = new_server(**SETTINGS)
    aio(_memory_run, timeout=100)(srv, transport)


async def _memory_run(srv: Server, transport: str) -> None:
    assert srv.proc is not None
    pid = srv.proc.pid
    slow, _ = await _stall(srv, transport)
    fast = await _blasters(srv)
    # warm up (first allocations, SQLite cache) before the baseline
    await asyncio.gather(*(b.send(100, TEXT) for b in fast))
    before = rss_bytes(pid)
    sampler = RssSampler(pid).start()
    started = time.monotonic()
    received_before = sum(b.bytes for b in fast)
    await asyncio.gather(*(b.send(PER_SENDER, TEXT) for b in fast))
    elapsed = time.monotonic() - started
    peak = await sampler.stop()
    head = max(b.last_seq for b in fast)
    for b in fast:
        assert b.close_code is None, f"a fast reader was closed {b.close_code}"
        assert b.out_of_order == 0
        await wait_for(lambda b=b: b.last_seq >= head, "a fast reader catching up", 10)
    delivered = sum(b.bytes for b in fast) - received_before
    after_blast = rss_bytes(pid)

    drain_started = time.monotonic()
    drained = await slow.drain(timeout=30)
    drain_time = time.monotonic() - drain_started
    after = rss_bytes(pid)
    _check_prefix(drained, head)
    per_reader = delivered / len(fast)
    owed = per_reader - drained.bytes  # what an unbounded server would have had to hold
    if transport == "ws":
        assert isinstance(slow, StalledWs)
        assert (drained.close_code, drained.close_reason) == (4409, "slow-consumer")
        ending = f"closed {drained.close_code} {drained.close_reason}"
    else:
        assert drained.ended, "the SSE stream did not end"
        assert any("4409" in c for c in drained.comments), drained.comments
        assert drained.retry_at[-1:] == [len(drained.envelopes)], "no retry: hint at the end"
        ending = f"stream ended ({drained.comments[-1]!r}, {drained.retry[-1]!r})"
    await slow.close()
    for b in fast:
        await b.close()

    growth = peak - before
    _report(
        [
            f"slow consumer ({transport}): OUTBOUND_QUEUE=64, {SENDERS} senders x "
            f"{PER_SENDER} chats of {TEXT} chars in {elapsed:.1f} s (head seq {head})",
            f"  server RSS: before {before / MB:.1f} MB, peak during {peak / MB:.1f} MB "
            f"(+{growth / MB:.1f} MB, {sampler.samples} samples), after the blast "
            f"{after_blast / MB:.1f} MB, after the slow tab drained {after / MB:.1f} MB",
            f"  delivered to the fast readers: {delivered / MB:.1f} MB "
            f"({per_reader / MB:.1f} MB each)",
            f"  the stalled tab got {len(drained.seqs)} events (seq {drained.seqs[0]}.."
            f"{drained.seqs[-1]}, {drained.bytes / MB:.1f} MB, read {drain_time:.2f} s "
            f"after the blast), then {ending}; it was owed {owed / MB:.1f} MB more",
        ]
    )
    assert delivered > 50 * MB
    assert owed > 2 * GROWTH_LIMIT, "not enough load to tell bounded from unbounded"
    assert growth < GROWTH_LIMIT, f"server RSS grew {growth / MB:.1f} MB"


# --------------------------------------------------------------------------- resume


REPLAY_BUG = (
    "server bug: Hub.attach hands the whole greeting (ready + every missed event) to "
    "Connection.start, which pushes it through the bounded outbound queue "
    "(app/hub.py Connection.push: len(queue) >= limit -> close 4409); a resume that "
    "missed more than OUTBOUND_QUEUE events is closed 4409 before `ready`, every time"
)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_slow_consumer_resumes_and_has_everything(
    new_server: Callable[..., Server], transport: str
) -> None:
    srv = new_server(**SETTINGS)
    aio(_resume_run, timeout=60)(srv, transport)


async def _overflow(srv: Server, slow: StalledWs | RawSse) -> tuple[Drained, int]:
    """Chat at full speed until the stalled tab must have overflowed; drain it."""
    fast = await _blasters(srv, 2)
    await asyncio.gather(*(b.send(1500, TEXT) for b in fast))
    head = max(b.last_seq for b in fast)
    for b in fast:
        await b.close()
    drained = await slow.drain(timeout=30)
    await slow.close()
    _check_prefix(drained, head)
    if isinstance(slow, StalledWs):
        assert (drained.close_code, drained.close_reason) == (4409, "slow-consumer")
    else:
        assert drained.ended and any("4409" in c for c in drained.comments), drained.comments
    return drained, head


async def _resume_run(srv: Server, transport: str) -> None:
    slow, epoch = await _stall(srv, transport)
    drained, head = await _overflow(srv, slow)
    last = drained.seqs[-1]
    if transport == "ws":
        back: WsClient | SseClient = await WsClient.open(
            srv, slow.user, last_seq=last, epoch=epoch, timeout=10
        )
    else:
        back = await SseClient.open(srv, slow.user, last_event_id=f"{epoch}:{last}", timeout=10)
    assert back.ready["recovered"] is True, back.ready
    await back.wait_durable(head, timeout=20)
    seqs = [e["seq"] for e in back.durable]
    assert seqs[: head - last] == list(range(last + 1, head + 1)), "not every missed event"
    _report(
        [
            f"slow consumer ({transport}) resume: stalled tab got seq 1..{last}, resumed "
            f"with lastSeq {last}: recovered, replayed {head - last} events up to {head}"
        ]
    )


# --------------------------------------------------------------------------- presence


def test_slow_consumer_reconnecting_within_grace_does_not_flap(
    new_server: Callable[..., Server],
) -> None:
    """Presence keeps a slow consumer that comes back within ``PRESENCE_GRACE``.

    The tab comes back fresh (no ``lastSeq``): a resume after an overflow trips the
    replay bug above (``test_slow_consumer_resumes_and_has_everything``), which
    would turn this into a test of that bug.
    """
    srv = new_server(**SETTINGS, PRESENCE_GRACE="3")
    aio(_flap_run, timeout=60)(srv)


def _system(name: str, verb: str) -> Callable[[dict[str, object]], bool]:
    return lambda d: (
        d.get("kind") == "system" and name in str(d.get("text")) and verb in str(d.get("text"))
    )


async def _flap_run(srv: Server) -> None:
    slow, _ = await _stall(srv, "ws")
    assert isinstance(slow, StalledWs)
    leaver = await WsClient.open(srv, await asession(srv.http, uniq("leaver")))
    fast = await _blasters(srv, 2)
    await asyncio.gather(*(b.send(1500, TEXT) for b in fast))
    for b in fast:
        await b.close()
    observer = await WsClient.open(srv, await asession(srv.http, uniq("observer")))
    assert leaver.user is not None
    listed = {u["userId"] for u in observer.presence["users"]}
    assert {slow.user.userId, leaver.user.userId} <= listed

    drained = await slow.drain(timeout=30)
    await slow.close()
    assert drained.close_code == 4409, (drained.close_code, drained.close_reason)
    gone = time.monotonic()
    await leaver.close()  # the control: gone for good at the same moment
    back = await WsClient.open(srv, slow.user)
    gap = time.monotonic() - gone
    await observer.expect("chat", _system(leaver.user.userName, "left"), timeout=10)
    waited = time.monotonic() - gone
    name = slow.user.userName
    assert not observer.seen("chat", _system(name, "left")), "the slow consumer 'left'"
    assert not observer.seen("chat", _system(name, "joined")), "the slow consumer 're-joined'"
    removed = [e for e in observer.seen("presence-diff") if slow.user.userId in e["data"]["remove"]]
    assert not removed, removed
    assert back.ready["userId"] == slow.user.userId
    _report(
        [
            f"presence: the slow consumer was closed {drained.close_code} and came back after "
            f"{gap:.2f} s (grace 3 s); {waited:.1f} s later the control user had left and it "
            "had neither left nor re-joined"
        ]
    )


# --------------------------------------------------------------------------- stalled for good

STALL_BUG = (
    "server bug: a connection closed for 4409 whose writer is blocked on a full socket "
    "is never torn down (app/transports/websocket.py _writer awaits ws.send_text, which "
    "waits for the socket to drain with no timeout; sse.py _stream blocks the same way in "
    "the response body send; Connection.close is a no-op once "
    "closing, so the 4408 heartbeat close is ignored too): the tab stays in presence and "
    "holds its socket and task for as long as the peer keeps the TCP connection open"
)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_stalled_tab_that_never_reads_again_is_dropped(
    new_server: Callable[..., Server], transport: str
) -> None:
    srv = new_server(
        **SETTINGS, HEARTBEAT_INTERVAL="1", HEARTBEAT_TIMEOUT="2", PRESENCE_GRACE="0.5"
    )
    aio(_stalled_for_good_run, timeout=60)(srv, transport)


async def _stalled_for_good_run(srv: Server, transport: str) -> None:
    slow, _ = await _stall(srv, transport)
    fast = await _blasters(srv, 2)
    await asyncio.gather(*(b.send(1500, TEXT) for b in fast))
    for b in fast:
        await b.close()
    observer = await WsClient.open(srv, await asession(srv.http, uniq("observer")))

    async def keep_alive() -> None:
        while True:
            await observer.send("ping", {})
            await asyncio.sleep(0.5)

    pinger = asyncio.create_task(keep_alive())
    left = _system(slow.user.userName, "left")
    try:
        # it overflowed during the blast at the latest (4409, or 4408 after 2 s), then
        # grace (0.5 s): the "left" message may already be history when the observer comes
        if not any(left(m) for m in observer.history or []):
            await observer.expect("chat", left, timeout=10)
        assert slow.user.userId not in room_users(observer)
    except AssertionError:
        listed = {u["userId"] for u in observer.presence["users"]}
        drained = await slow.drain(timeout=30)  # what the server had decided meanwhile
        raise AssertionError(
            f"10 s after the blast the stalled {transport} tab is still present "
            f"(listed at the observer's connect: {slow.user.userId in listed}); reading "
            f"again it got {len(drained.seqs)} events, then close {drained.close_code} / "
            f"{drained.comments[-1:]}: the server had cut it but never let go"
        ) from None
    finally:
        pinger.cancel()
        await slow.close()
