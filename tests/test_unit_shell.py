"""In-process tests of the asyncio shell: the connection, the flusher and the hub.

No sockets: a memory store and broker, fake direct links, the real core. They pin
down what the integration tests only see from outside: the connection's state
table, the flusher's one write per pass, and the hub carrying out the core's
outputs (a committed message reaching every connection from its stored bytes,
the clock ticking at the core's deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from support.clients import aio

from app.backends.memory import MemoryBroker, MemoryStore
from app.core import Chat, ChatConfig, ClientError, CloseCode, Identity
from app.core.messages import Chat as ChatMessage
from app.hub import Connection, ConnState, Hub, Waiter
from app.metrics import Metrics
from app.transports.flush import Flusher
from app.wire import Frame

ADA = Identity("u-ada", "Ada")
BOB = Identity("u-bob", "Bob")


def frame(kind: str = "typing", seq: int | None = None, size: int = 10) -> Frame:
    return Frame(kind, b"x" * size, seq, None)


def types(frames: list[Frame]) -> list[str]:
    return [f.type for f in frames]


# ------------------------------------------------------------------ Connection


@aio
async def test_a_connection_buffers_until_its_greeting_then_drops_replayed_seqs() -> None:
    conn = Connection(ADA, "ws", limit=10)
    assert conn.state is ConnState.SYNCING
    conn.push(frame("chat", seq=5))  # arrived while the replay was read
    conn.push(frame("chat", seq=6))
    assert conn.queued() == 0
    conn.start([frame("ready"), frame("chat", seq=5)])  # the replay held seq 5 already
    assert conn.state is ConnState.OPEN
    assert [(f.type, f.seq) for f in conn.take()] == [
        ("ready", None),
        ("chat", 5),
        ("chat", 6),
    ]


@aio
async def test_overflow_closes_with_4409_and_drops_the_queue() -> None:
    conn = Connection(ADA, "ws", limit=2)
    conn.start([])
    conn.push(frame())
    conn.push(frame())
    conn.push(frame())
    assert conn.state is ConnState.CLOSING
    assert conn.close_code == CloseCode.SLOW
    assert conn.queued() == 0
    conn.finished()  # disarms the abort timer


@aio
async def test_the_byte_bound_counts_too() -> None:
    conn = Connection(ADA, "sse", limit=100)
    conn.max_bytes = 100
    conn.start([])
    conn.push(frame(size=60))
    conn.push(frame(size=60))
    assert conn.closing and conn.close_code == CloseCode.SLOW
    conn.finished()


@aio
async def test_the_first_close_code_stands_and_a_late_greeting_is_ignored() -> None:
    conn = Connection(ADA, "ws", limit=10)
    conn.close(CloseCode.RESTART, "server-restart")
    conn.close(CloseCode.NORMAL, "")
    conn.start([frame("ready")])
    assert (conn.state, conn.close_code, conn.queued()) == (ConnState.CLOSING, 1012, 0)


@aio
async def test_a_stalled_reader_is_let_go_of_after_abort_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Connection, "ABORT_AFTER", 0.01)
    conn = Connection(ADA, "ws", limit=10)
    aborted = asyncio.Event()
    conn.on_abort = aborted.set
    conn.start([])
    conn.close(CloseCode.HEARTBEAT, "heartbeat-timeout")
    await asyncio.wait_for(aborted.wait(), 1)


@aio
async def test_next_batch_waits_for_frames_and_ends_after_the_close() -> None:
    conn = Connection(ADA, "sse", limit=10)
    conn.start([])
    waiting = asyncio.create_task(conn.next_batch())
    await asyncio.sleep(0)
    conn.push(frame("chat"))
    assert types(await asyncio.wait_for(waiting, 1) or []) == ["chat"]
    with pytest.raises(TimeoutError):
        await conn.next_batch(idle=0.01)
    conn.close(CloseCode.NORMAL, "")
    assert await conn.next_batch() is None


# --------------------------------------------------------------------- Flusher


class FakeLink:
    """A direct link that records what the flusher writes."""

    def __init__(self, writable: bool = True) -> None:
        self.on_writable: Callable[[], None] | None = None
        self.writable = writable
        self.writes: list[list[str]] = []
        self.ended: tuple[int, str] | None = None
        self.written = False

    @property
    def can_write(self) -> bool:
        return self.writable

    def write(self, batch: list[Frame]) -> bool:
        self.writes.append(types(batch))
        return True

    def write_raw(self, parts: list[bytes]) -> bool:
        self.writes.append([p.decode() for p in parts])
        return True

    def end(self, code: int, reason: str) -> None:
        self.ended = (code, reason)

    def abort(self) -> None:
        pass


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@aio
async def test_the_flusher_writes_each_connection_once_per_pass() -> None:
    flusher = Flusher(Metrics(), keepalive=15)
    conns = [Connection(ADA, "ws", 10), Connection(BOB, "ws", 10)]
    links = [FakeLink(), FakeLink()]
    for conn, link in zip(conns, links, strict=True):
        flusher.link(conn, link)
        conn.start([])
    for conn in conns:
        conn.push(frame("chat"))
        conn.push(frame("typing"))
    await settle()
    assert [link.writes for link in links] == [[["chat", "typing"]], [["chat", "typing"]]]


@aio
async def test_a_paused_transport_keeps_its_frames_until_it_drains() -> None:
    flusher = Flusher(Metrics(), keepalive=15)
    conn, link = Connection(ADA, "ws", 10), FakeLink(writable=False)
    flusher.link(conn, link)
    conn.start([])
    conn.push(frame("chat"))
    await settle()
    assert link.writes == [] and conn.queued() == 1
    link.writable = True
    assert link.on_writable is not None
    link.on_writable()
    await settle()
    assert link.writes == [["chat"]]


@aio
async def test_the_flusher_ends_a_closing_connection_after_its_last_frames() -> None:
    flusher = Flusher(Metrics(), keepalive=15)
    conn, link = Connection(ADA, "ws", 10), FakeLink()
    flusher.link(conn, link)
    conn.start([])
    conn.push(frame("chat"))
    conn.close(CloseCode.RESTART, "server-restart")
    await settle()
    assert link.writes == [["chat"]]
    assert link.ended == (1012, "server-restart")
    flusher.unlink(conn)
    assert conn.notify is None and link.on_writable is None


@aio
async def test_an_idle_stream_gets_a_keep_alive_comment() -> None:
    flusher = Flusher(Metrics(), keepalive=0.02)
    conn, link = Connection(ADA, "sse", 10), FakeLink()
    flusher.link_stream(conn, link)  # type: ignore[arg-type]
    conn.start([])
    await asyncio.sleep(0.05)
    assert [": keep-alive\n\n"] in link.writes
    flusher.unlink(conn)


# ------------------------------------------------------------------------- Hub


@contextlib.asynccontextmanager
async def running_hub() -> AsyncIterator[Hub]:
    core = Chat(ChatConfig(presence_batch=0.0, typing_timeout=0.05))
    hub = Hub(core, MemoryStore(), MemoryBroker())
    await hub.start()
    yield hub
    await hub.stop(timeout=1)


def decoded(conn: Connection) -> list[dict[str, object]]:
    return [orjson.loads(f.json) for f in conn.take()]


async def attach(hub: Hub, who: Identity) -> Connection:
    conn = Connection(who, "ws", 100)
    assert hub.admit(conn) is None
    await hub.attach(conn, None, None)
    return conn


@aio
async def test_the_greeting_is_ready_history_presence_bots() -> None:
    async with running_hub() as hub:
        conn = await attach(hub, ADA)
        greeting = [m["type"] for m in decoded(conn)][:4]
        assert greeting == ["ready", "history", "presence", "bot-state"]


@aio
async def test_a_committed_message_reaches_everyone_from_its_stored_bytes() -> None:
    async with running_hub() as hub:
        ada, bob = await attach(hub, ADA), await attach(hub, BOB)
        decoded(ada), decoded(bob)
        hub.receive(ada, orjson.dumps({"type": "chat", "data": {"text": "hi"}, "ref": "r1"}))
        await hub.pipeline.drafts.join()
        record = (await hub.store.recent(10))[-1]
        for conn in (ada, bob):
            chats = [f for f in conn.take() if f.type == "chat"]
            assert [f.seq for f in chats][-1] == record.seq
            assert record.data in chats[-1].json  # the stored bytes, not a second encode


@aio
async def test_a_post_is_answered_after_the_store() -> None:
    async with running_hub() as hub:
        await attach(hub, ADA)
        ack = await hub.submit(ADA, None, ChatMessage("hello", "c-1", "r-9"))
        assert ack["ref"] == "r-9" and ack["clientId"] == "c-1" and isinstance(ack["seq"], int)


@aio
async def test_a_client_mistake_is_an_error_frame_with_its_ref() -> None:
    async with running_hub() as hub:
        conn = await attach(hub, ADA)
        decoded(conn)
        hub.receive(conn, b'{"type":"chat","data":{},"ref":"r2"}')
        (error,) = decoded(conn)
        assert error["type"] == "error"
        assert error["data"] == {"code": "invalid", "message": "data.text is required", "ref": "r2"}


@aio
async def test_a_waiter_answered_late_reaches_the_senders_stream() -> None:
    async with running_hub() as hub:
        conn = await attach(hub, ADA)
        decoded(conn)
        waiter = Waiter(ADA.user_id, conn.peer_id)
        waiter.done({})
        hub.fail(waiter, ClientError("ai_unavailable", "gone", "r3"))
        (error,) = decoded(conn)
        assert error["data"] == {"code": "ai_unavailable", "message": "gone", "ref": "r3"}


@aio
async def test_the_clock_ticks_at_the_cores_deadline() -> None:
    async with running_hub() as hub:
        ada, bob = await attach(hub, ADA), await attach(hub, BOB)
        hub.receive(ada, b'{"type":"typing","data":{"isTyping":true}}')
        decoded(bob)
        # typing expires 50 ms later: no poll, the clock was armed at that deadline
        seen: list[object] = []
        for _ in range(50):
            await asyncio.sleep(0.01)
            seen += [m["data"]["isTyping"] for m in decoded(bob) if m["type"] == "typing"]  # type: ignore[index]
            if seen:
                break
        assert seen == [False]


@aio
async def test_detach_gives_the_place_back_and_says_goodbye() -> None:
    async with running_hub() as hub:
        ada, bob = await attach(hub, ADA), await attach(hub, BOB)
        decoded(bob)
        hub.detach(ada, CloseCode.GOING_AWAY)
        assert ada.peer_id not in hub.conns and hub.admission.admitted == 1
        assert any(m["type"] == "presence-diff" for m in decoded(bob))


@aio
async def test_shutdown_closes_every_connection_with_1012() -> None:
    async with running_hub() as hub:
        conn = await attach(hub, ADA)
        hub.begin_shutdown()
        assert conn.close_code == CloseCode.RESTART
        refused = Connection(BOB, "ws", 10)
        assert hub.admit(refused) == "server-restart"
