"""Restarts with the SQLite store (issue 3): resume, a wiped store, SIGTERM, the schema.

Every server here is ``BACKEND=sqlite`` and is stopped and started again on the same
port and data directory (``srv.kill()`` is SIGKILL, ``srv.start()`` starts it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import (
    Session,
    SseClient,
    WsClient,
    aio,
    asession,
    post,
    server_factory,
    uniq,
)
from support.faults import RawSse, ResumingClient, db_events, db_meta
from support.server import Server
from websockets.exceptions import WebSocketException

from app.backends.sqlite import MIGRATIONS


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    with server_factory(tmp_path) as factory:
        yield factory


def sqlite(new_server: Callable[..., Server], **settings: str) -> Server:
    return new_server(BACKEND="sqlite", RATE_CHAT="1000", RATE_CHAT_BURST="1000", **settings)


async def restart(srv: Server, how: str = "kill") -> None:
    """SIGKILL (or SIGTERM) the server and start it again, same port, same data."""
    if how == "kill":
        srv.kill()
    else:
        srv.stop(signal.SIGTERM)
    await asyncio.to_thread(srv.start)


async def chat_by_post(srv: Server, user: Session, count: int, tag: str) -> list[dict[str, Any]]:
    """``count`` acked chats from a user with no stream open."""
    acks = []
    for i in range(count):
        cid = uniq(tag)
        resp = await post(
            srv.http, "/api/chat-message", {"text": f"{tag} {i}", "clientId": cid}, token=user.token
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["clientId"] == cid
        acks.append(resp.json())
    return acks


async def truth(srv: Server) -> tuple[WsClient, dict[int, dict[str, Any]]]:
    """A new tab's view of everything stored: its history, then its own join."""
    observer = await WsClient.open(srv, await asession(srv.http, uniq("observer")))
    history = observer.history
    assert history is not None
    name = observer.user.userName if observer.user else ""
    joined = await observer.expect("chat", lambda d: name in str(d.get("text")))
    view = {int(m["seq"]): m for m in history}
    view[int(joined["seq"])] = joined["data"]
    return observer, view


async def open_tab(
    srv: Server, user: Session, transport: str, last_seq: int | None, epoch: str | None
) -> WsClient | SseClient:
    if transport == "ws":
        return await WsClient.open(srv, user, last_seq=last_seq, epoch=epoch)
    leid = None if last_seq is None else f"{epoch}:{last_seq}"
    return await SseClient.open(srv, user, last_event_id=leid)


TRANSPORTS = ["ws", "sse"]


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("transport", TRANSPORTS)
@aio
async def test_resume_after_sigkill_restart_replays_exactly_the_missed_events(
    new_server: Callable[..., Server], transport: str
) -> None:
    srv = sqlite(new_server, HISTORY_LIMIT="1000")
    ada = await asession(srv.http, uniq("Ada"))
    bob = await asession(srv.http, uniq("Bob"))
    tab = await open_tab(srv, ada, transport, None, None)
    for i in range(3):
        reply = await tab.chat(f"before {i}", cid := uniq("ada"))
        assert reply.ok, reply
        await tab.expect("chat", lambda d, c=cid: d.get("clientId") == c)
    last, epoch = tab.last_seq, str(tab.ready["epoch"])
    if isinstance(tab, SseClient):
        assert tab.last_event_id == f"{epoch}:{last}"
    await tab.close()

    missed = await chat_by_post(srv, bob, 4, "before-kill")
    await restart(srv, "kill")
    missed += await chat_by_post(srv, bob, 3, "after-restart")
    observer, stored = await truth(srv)  # quiet now: the observer's join is in

    back = await open_tab(srv, ada, transport, last, epoch)
    assert back.ready["recovered"] is True, back.ready
    assert back.ready["epoch"] == epoch
    assert back.history is None
    head = int(back.ready["lastSeq"])
    assert head == max(stored)
    replay = back.replayed
    assert [e["seq"] for e in replay] == list(range(last + 1, head + 1)), "gaps or extras"
    assert [e["data"] for e in replay] == [stored[s] for s in range(last + 1, head + 1)]
    replayed_ids = {e["data"]["id"]: e["seq"] for e in replay}
    assert all(replayed_ids.get(a["id"]) == a["seq"] for a in missed), "an acked message lost"
    if isinstance(back, SseClient):
        ids = [f.id for f in back.frames if f.id is not None][: len(replay)]
        assert ids == [f"{epoch}:{e['seq']}" for e in replay]
    await observer.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
@aio
async def test_wiped_data_dir_means_new_epoch_not_recovered_and_history(
    new_server: Callable[..., Server], transport: str
) -> None:
    srv = sqlite(new_server)
    ada = await asession(srv.http, uniq("Ada"))
    bob = await asession(srv.http, uniq("Bob"))
    tab = await open_tab(srv, ada, transport, None, None)
    old = [await tab.chat(f"old {i}") for i in range(3)]
    assert all(r.ok for r in old)
    await tab.wait_durable(old[-1].data["seq"])
    last, epoch = tab.last_seq, str(tab.ready["epoch"])
    await tab.close()

    srv.kill()
    for name in ("lastra.db", "lastra.db-wal", "lastra.db-shm"):
        (srv.data_dir / name).unlink(missing_ok=True)
    await asyncio.to_thread(srv.start)
    new = await chat_by_post(srv, bob, 2, "new")

    back = await open_tab(srv, ada, transport, last, epoch)
    assert back.ready["recovered"] is False, back.ready
    assert back.ready["epoch"] != epoch, "a wiped store must have a new epoch"
    history = back.history
    assert history is not None, "not recovered: the history must follow ready"
    assert back.replayed == []
    texts = [m["text"] for m in history]
    assert [f"new {i}" for i in range(2)] == [t for t in texts if t.startswith("new ")]
    assert not any(t.startswith("old ") for t in texts)
    assert [m["seq"] for m in history] == list(range(1, len(history) + 1))
    assert {a["id"] for a in new} <= {m["id"] for m in history}
    assert db_meta(srv.data_dir)["epoch"] == back.ready["epoch"]


# --------------------------------------------------------------------------- SIGTERM


@aio
async def test_sigterm_closes_1012_ends_sse_with_retry_exits_and_keeps_acked(
    new_server: Callable[..., Server],
) -> None:
    srv = sqlite(new_server)
    assert srv.proc is not None
    ws_user = await asession(srv.http, uniq("ws"))
    sse_user = await asession(srv.http, uniq("sse"))
    ws = await WsClient.open(srv, ws_user)
    sse = await RawSse.open(srv, sse_user)
    await sse.wait_until(
        lambda: any(e["type"] == "bot-state" for e in sse.result.envelopes), "greeting", 5
    )

    # acked just before the signal, on both transports
    acked = [(ws_user.userId, (await ws.chat("ws before TERM", uniq("w"))).data)]
    resp = await post(
        srv.http,
        "/api/chat-message",
        {"text": "sse before TERM", "clientId": uniq("s")},
        token=sse_user.token,
    )
    assert resp.status_code == 200
    acked.append((sse_user.userId, resp.json()))
    assert all("seq" in a for _, a in acked)

    # in flight while the signal lands: 20 frames and 5 POSTs nobody waited for
    inflight = [uniq("wf") for _ in range(20)]
    for cid in inflight:
        await ws.send("chat", {"text": f"in flight {cid}", "clientId": cid})
    http = httpx.AsyncClient(base_url=srv.http, timeout=10, trust_env=False)
    posts = [
        asyncio.create_task(
            http.post(
                "/api/chat-message",
                json={"text": f"posting {i}", "clientId": uniq("sf")},
                headers=sse_user.bearer,
            )
        )
        for i in range(5)
    ]
    await asyncio.sleep(0)  # let the POSTs start
    signalled = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)

    code, reason = await ws.wait_closed(timeout=10)
    assert code == 1012, (code, reason)
    ws_closed = time.monotonic() - signalled
    drained = await sse.drain(timeout=10)
    assert drained.ended, "the SSE stream did not end"
    assert drained.retry, "no retry: line"
    assert drained.retry_at[-1] == len(drained.envelopes), "the retry: hint is not at the end"
    assert any("1012" in c for c in drained.comments), drained.comments
    sse_ended = time.monotonic() - signalled
    rc = await asyncio.to_thread(srv.proc.wait, 10)
    exited = time.monotonic() - signalled
    assert exited < 10, f"exit took {exited:.1f} s"

    before = len(acked)
    acked += [
        (ws_user.userId, e["data"]) for e in ws.seen("ack", lambda d: d["clientId"] in inflight)
    ]
    for task in posts:
        try:
            resp = await task
        except httpx.HTTPError:
            continue
        if resp.status_code == 200:
            acked.append((sse_user.userId, resp.json()))
    assert len({(u, a["clientId"]) for u, a in acked}) == len(acked)
    await http.aclose()
    await sse.close()

    await asyncio.to_thread(srv.start)
    observer = await WsClient.open(srv, await asession(srv.http, uniq("after")))
    history = observer.history or []
    found = {(m.get("userId"), m.get("clientId")): m for m in history}
    counts: dict[tuple[Any, Any], int] = {}
    for m in history:
        key = (m.get("userId"), m.get("clientId"))
        counts[key] = counts.get(key, 0) + 1
    for user_id, ack in acked:
        key = (user_id, ack["clientId"])
        assert key in found, f"acked {ack} is gone after the restart"
        assert counts[key] == 1
        assert (found[key]["id"], found[key]["seq"]) == (ack["id"], ack["seq"])
    print(
        f"\nSIGTERM: ws closed 1012 after {ws_closed:.2f} s, SSE ended after {sse_ended:.2f} s "
        f"with {drained.retry[-1]!r}, process exited (rc {rc}) after {exited:.2f} s; "
        f"{before} acked before it and {len(acked) - before} of 25 in flight acked, all kept"
    )


@aio
async def test_sigterm_refuses_new_connections(new_server: Callable[..., Server]) -> None:
    """Once SIGTERM has landed, a new tab is never served (refused, or closed 1012/1013)."""
    srv = sqlite(new_server)
    assert srv.proc is not None
    user = await asession(srv.http, uniq("late"))
    keep = await WsClient.open(srv, await asession(srv.http, uniq("stay")))  # slows the exit
    srv.proc.send_signal(signal.SIGTERM)
    await keep.wait_closed(timeout=10)
    try:
        late = await WsClient.connect(srv.ws, user)
    except (OSError, WebSocketException):
        return  # refused at the TCP or HTTP level: fine
    await late.auth(user.token, settle=False)
    code, _ = await late.wait_closed(timeout=10)
    assert not late.seen("ready"), "a tab was served after SIGTERM"
    assert code in (1012, 1013, 1006), code  # restarting / try again later / dropped


# --------------------------------------------------------------------------- schema


@aio
async def test_fresh_database_has_the_current_schema_version(
    new_server: Callable[..., Server],
) -> None:
    srv = sqlite(new_server)
    await asyncio.to_thread(srv.stop)
    meta = db_meta(srv.data_dir)
    assert meta["schema_version"] == str(len(MIGRATIONS))
    epoch = meta["epoch"]
    assert epoch
    with contextlib.closing(sqlite3.connect(srv.data_dir / "lastra.db")) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"meta", "events", "idempotency", "bots"} <= tables
    assert mode == "wal"
    # starting again on that file migrates nothing and keeps the history's name
    await asyncio.to_thread(srv.start)
    await asyncio.to_thread(srv.stop)
    assert db_meta(srv.data_dir)["schema_version"] == str(len(MIGRATIONS))
    assert db_meta(srv.data_dir)["epoch"] == epoch


@aio
async def test_trimmed_history_keeps_seq_continuity_across_restarts(
    new_server: Callable[..., Server],
) -> None:
    limit = 10
    srv = sqlite(new_server, HISTORY_LIMIT=str(limit))
    bob = await asession(srv.http, uniq("Bob"))
    watcher = ResumingClient(srv, await asession(srv.http, uniq("watch")), "ws", random.Random(1))
    assert await watcher.connect()
    acks = await chat_by_post(srv, bob, 25, "trim")
    await watcher.catch_up(acks[-1]["seq"], timeout=5)

    def stored_seqs() -> list[int]:
        return [s for s, _, _ in db_events(srv.data_dir)]

    head = acks[-1]["seq"]
    assert stored_seqs() == list(range(head - limit + 1, head + 1)), "trimmed to the limit"
    assert int(db_meta(srv.data_dir)["last_seq"]) == head

    # a tab whose lastSeq was trimmed away: not recovered, the newest `limit` as history
    stale = await WsClient.open(srv, bob, last_seq=1, epoch=watcher.epoch)
    assert stale.ready["recovered"] is False
    assert stale.history is not None
    assert [m["seq"] for m in stale.history] == list(range(head - limit + 1, head + 1))
    await stale.close()

    seqs = [a["seq"] for a in acks]
    for how in ("kill", "term", "kill"):
        await watcher.drop()
        await restart(srv, how)
        more = await chat_by_post(srv, bob, 3, f"after-{how}")
        assert more[0]["seq"] > seqs[-1], f"seq went back after a {how} restart"
        seqs += [a["seq"] for a in more]
        assert await watcher.connect()
        await watcher.catch_up(more[-1]["seq"], timeout=5)
        top = stored_seqs()
        assert top == list(range(top[0], top[-1] + 1)) and len(top) <= limit

    # a clear empties the table, but not the counter
    clearer = await WsClient.open(srv, bob)
    reply = await clearer.request("clear", {})
    assert reply.ok, reply
    await clearer.close()
    cleared = int(db_meta(srv.data_dir)["last_seq"])
    await watcher.drop()
    await restart(srv, "kill")
    after_clear = await chat_by_post(srv, bob, 1, "after-clear")
    assert after_clear[0]["seq"] > cleared
    assert await watcher.connect()
    await watcher.catch_up(after_clear[0]["seq"], timeout=5)

    assert not watcher.problems, watcher.problems
    seen = sorted(watcher.view)
    assert seen == list(range(seen[0], seen[-1] + 1)), "the watcher saw a gap in seq"
    assert set(seqs) <= set(seen)
