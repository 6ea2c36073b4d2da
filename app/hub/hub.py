"""The hub: carries out the core's outputs for the connections of this process.

Transports hand it admitted connections (:meth:`Hub.attach`) and client messages
(:meth:`Hub.receive`, :meth:`Hub.submit`); it feeds them to the core and carries
out what the core returns (:meth:`Hub.carry_out`). It decides nothing the core
decides, and the core never sees a socket (its helpers: see :mod:`app.hub`).

Ordering: one pipeline task appends drafts in batches and carries out what
:meth:`Chat.committed` returns in ``seq`` order, so every client sees durable
events in one order. A connection that is still being synced (ready, replay,
snapshots) buffers broadcasts and drops durable ones it already got, by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from app.backends.base import (
    Broker,
    FactMessage,
    FrameMessage,
    Record,
    SendMessage,
    SharedStore,
    Store,
)
from app.core import (
    Append,
    AskBot,
    Broadcast,
    Chat,
    ClientError,
    Close,
    CloseCode,
    Draft,
    Event,
    Identity,
    Output,
    Publish,
    Reply,
    SaveBotState,
    Send,
    Tally,
    parse,
)
from app.core.messages import ClientMessage, parse_ref
from app.metrics import Metrics
from app.wire import Frame, decode, encode_event, frame_from_record

from .admission import Admission
from .bots import BotService
from .clock import Clock
from .cluster import Cluster
from .connection import Connection
from .greeting import Greeting
from .pipeline import Pipeline
from .requests import Origin, Waiter, deliver
from .windows import WindowedDiff

__all__ = ["Hub"]

log = logging.getLogger("lastra.hub")


class Hub:
    """Carries out the core's outputs: frames to connections, drafts to the store, facts out."""

    def __init__(
        self,
        core: Chat,
        store: Store,
        broker: Broker,
        *,
        ice_servers: Callable[[str], list[Any]] | None = None,
        metrics: Metrics | None = None,
        max_connections: int = 10_000,
        max_user_connections: int = 20,
        max_address_connections: int = 100,
        max_queue_bytes: int = Connection.MAX_BYTES,
    ) -> None:
        self.core = core
        self.store = store
        self.broker = broker
        self.metrics = metrics or Metrics()
        self.admission = Admission(
            max_connections, max_user_connections, max_address_connections, max_queue_bytes
        )
        #: userId → the ICE servers for ``ready`` (TURN credentials are per user)
        self.greeting = Greeting(core, store, ice_servers or (lambda _user: []))
        #: several processes share this chat: fan out through the broker
        self.clustered = store.shared
        self._diff_counts: tuple[int, int] | None = None  # the last large-room diff's
        self.conns: dict[str, Connection] = {}
        self.clock = Clock(core, lambda outputs: self.carry_out(outputs, None))
        self.pipeline = Pipeline(self)
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.bots: BotService | None = None

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.store.open()
        self.core.restore_bot_states(await self.store.bot_states())
        now = time.monotonic()
        for fact in await self.broker.open():
            self.core.apply(fact, now)  # our own peers: none yet, so no outputs
        self._tasks = [asyncio.create_task(self.pipeline.run(), name="lastra-pipeline")]
        if self.clustered:
            self._tasks += await Cluster(self, cast(SharedStore, self.store)).start()
        self.clock.arm()

    def begin_shutdown(self) -> None:
        """Refuse new connections and close every open one with 1012 (SSE: stream ends).

        Call it first on SIGTERM, so clients start resuming elsewhere while the
        server finishes its in-flight writes.
        """
        self.closing = True
        for conn in list(self.conns.values()):
            conn.close(CloseCode.RESTART, "server-restart")

    async def stop(self, timeout: float = 5.0) -> None:
        """Close every connection with 1012, finish in-flight writes, close the store."""
        self.begin_shutdown()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.pipeline.drafts.join(), timeout)
        if self.bots is not None:
            await self.bots.close()
        self.clock.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.broker.close()
        await self.store.close()

    # ------------------------------------------------------------- connections

    def admit(self, conn: Connection) -> str | None:
        """Reserve a place for ``conn`` (before :meth:`attach`), or say why it is refused.

        :meth:`detach` (or :meth:`release`) gives it back.
        """
        reason = self.admission.admit(conn, self.closing)
        if reason is not None:
            self.metrics.refused.labels(reason).inc()
        return reason

    def release(self, conn: Connection) -> None:
        """Give back the place :meth:`admit` reserved (idempotent)."""
        self.admission.release(conn)

    async def attach(self, conn: Connection, last_seq: int | None, epoch: str | None) -> None:
        """Register ``conn`` and queue its greeting: ready, replay or history, snapshots."""
        if self.closing:
            conn.close(CloseCode.RESTART, "server-restart")
            return
        self.conns[conn.peer_id] = conn
        try:
            current, replay, history = await self.greeting.read(last_seq, epoch)
        except Exception:
            log.warning("store unavailable while %s connected", conn.peer_id, exc_info=True)
            self.conns.pop(conn.peer_id, None)
            conn.close(CloseCode.TRY_LATER, "store-unavailable")
            self.metrics.refused.labels("store-unavailable").inc()
            return
        self.metrics.connected(conn.transport)
        self.carry_out(self.core.connect(conn.peer, time.monotonic()), conn)
        recovered = replay is not None
        if last_seq is not None:
            outcome = "recovered" if recovered else "history"
            self.metrics.resumes.labels(outcome, conn.transport).inc()
        log.info(
            "connected peer=%s user=%s transport=%s resume=%s recovered=%s",
            conn.peer_id,
            conn.identity.user_id,
            conn.transport,
            last_seq,
            recovered,
        )
        frames, newest = self.greeting.frames(conn.peer, current, replay, history)
        if newest is not None:
            conn.last_seq = newest  # pending copies of these are dropped
        conn.start(frames)

    def detach(self, conn: Connection, code: int | None = None) -> None:
        """The connection ended; ``code`` is the client's close code, if it closed first."""
        self.release(conn)
        if self.conns.pop(conn.peer_id, None) is not None:
            final = conn.close_code if conn.closing else CloseCode.NORMAL
            if code is not None and (not conn.closing or conn.close_code == CloseCode.ABNORMAL):
                final = code  # the client's own close code (it may race our failed write)
            self.metrics.disconnected(conn.transport, final)
            log.info(
                "disconnected peer=%s user=%s transport=%s code=%s",
                conn.peer_id,
                conn.identity.user_id,
                conn.transport,
                int(final),
            )
            self.carry_out(self.core.disconnect(conn.peer_id, time.monotonic()), None)

    # ---------------------------------------------------------------- messages

    def receive(self, conn: Connection, raw: str | bytes) -> None:
        """Handle one client frame from a WebSocket connection."""
        now = time.monotonic()
        self.core.touch(conn.peer_id, now)
        obj: Any = None
        try:
            try:
                obj = decode(raw)
            except ValueError:
                raise ClientError("bad_json", "the frame is not valid JSON") from None
            msg = parse(obj)
            self.metrics.received(msg.type, conn.transport)
            self.carry_out(self.core.receive(conn.identity, conn.peer_id, msg, now), conn)
        except ClientError as exc:
            self.reject(conn, exc)
        except Exception:
            trace = uuid.uuid4().hex[:12]
            log.exception("internal error handling a frame (trace %s)", trace)
            self.metrics.error("internal", conn.transport)
            data: dict[str, Any] = {"code": "internal", "message": f"internal error {trace}"}
            with contextlib.suppress(ClientError):
                if isinstance(obj, dict) and (ref := parse_ref(obj)) is not None:
                    data["ref"] = ref
            conn.push(encode_event(Event("error", data)))

    def reject(self, conn: Connection, err: ClientError) -> None:
        """Answer a client's mistake with an ``error`` frame (the connection stays open)."""
        self.metrics.error(err.code, conn.transport)
        conn.push(encode_event(Event("error", err.data())))

    async def submit(
        self,
        identity: Identity,
        peer_id: str | None,
        msg: ClientMessage,
        timeout: float = 10.0,
        transport: str = "sse",
    ) -> dict[str, Any]:
        """One message from a POST: returns the ack data or raises ClientError."""
        waiter = Waiter(identity.user_id, peer_id)
        self.metrics.received(msg.type, transport)
        answers_later = self.carry_out(
            self.core.receive(identity, peer_id, msg, time.monotonic()), waiter
        )
        if not waiter.future.done() and not answers_later:
            return {}
        try:
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            raise ClientError(
                "internal", "the store did not answer in time", getattr(msg, "ref", None)
            ) from None

    def carry_out(
        self, outputs: list[Output], origin: Origin, record: Record | None = None
    ) -> bool:
        """Carry out ``outputs`` in order; True when ``origin`` will be answered later.

        ``record`` is the stored form of the durable event being committed, if any:
        its bytes are sent as they are (no second encode).
        """
        answers_later = False
        for out in outputs:
            if isinstance(out, Broadcast):
                self._broadcast(out.event, record)
            elif isinstance(out, Send):
                conn = self.conns.get(out.peer_id)
                if conn is not None:
                    conn.push(encode_event(out.event))
                elif self.clustered:
                    frame = encode_event(out.event)
                    self.broker.publish(SendMessage(out.peer_id, frame.type, frame.text))
            elif isinstance(out, Publish):
                if self.clustered:
                    self.broker.publish(FactMessage(out.fact))
            elif isinstance(out, Reply):
                self._deliver(origin, out.event)
            elif isinstance(out, Append):
                out.draft.origin = origin
                self.pipeline.drafts.put_nowait(out.draft)
                answers_later = answers_later or origin is not None
            elif isinstance(out, Close):
                conn = self.conns.get(out.peer_id)
                if conn is not None:
                    conn.close(out.code, out.reason)
            elif isinstance(out, SaveBotState):
                task = asyncio.create_task(self.store.set_bot_state(out.name, out.enabled))
                task.add_done_callback(_log_failure)
                if self.bots is not None:
                    self.bots.on_toggle(out.name, out.enabled)
            elif isinstance(out, Tally):
                self.metrics.cohorts.tally(out.report, out.cohort, out.pair)
            elif isinstance(out, AskBot):
                if self.bots is None:
                    self.fail(origin, ClientError("ai_unavailable", "no bots here", out.ref))
                else:
                    self.bots.ask(out, origin)
                    answers_later = answers_later or isinstance(origin, Waiter)
        self.clock.poke()
        return answers_later

    def _broadcast(self, event: Event, record: Record | None) -> None:
        """A ``Broadcast``: durable events (with ``seq``) from their stored bytes."""
        if event.type == "presence-diff" and "total" in event.data:
            self.broadcast_diff(event.data)  # encoded per window; whole for other processes
            if self.clustered:
                self.broker.publish(FrameMessage(event.type, encode_event(event).text))
        elif event.seq is None:
            frame = encode_event(event)
            self.broadcast(frame)
            if self.clustered:
                self.broker.publish(FrameMessage(frame.type, frame.text))
        elif not self.clustered:  # shared store: every process delivers it from the tail
            epoch = self.store.epoch
            if record is not None and record.seq == event.seq:
                self.broadcast(frame_from_record(record.type, record.seq, record.data, epoch))
            else:
                self.broadcast(encode_event(event, epoch))

    def fail(self, origin: Origin, err: ClientError) -> None:
        """Answer ``origin`` with an error: a frame, a POST's error body, or (late) its stream."""
        self._deliver(origin, Event("error", err.data()))

    def answer(self, origin: Origin, data: dict[str, Any]) -> None:
        """Answer ``origin`` with ack data (POST body; WebSocket only when it has a ref)."""
        if isinstance(origin, Waiter):
            origin.done(data)
        elif origin is not None and "ref" in data:
            self._deliver(origin, Event("ack", data))

    def _deliver(self, origin: Origin, event: Event) -> None:
        deliver(origin, event, self.metrics, self._streams_of)

    def _streams_of(self, waiter: Waiter) -> list[Connection]:
        """Where a POST's late answer goes: its named stream, else all the user's."""
        conn = self.conns.get(waiter.peer_id or "")
        if conn is not None:
            return [conn]
        return [c for c in self.conns.values() if c.identity.user_id == waiter.user_id]

    def broadcast_event(self, event: Event) -> None:
        """Send a non-durable event to every connection, on every process (``ai-stream``, …)."""
        if event.type == "ai-stream":  # a reply ends with exactly one done or error
            bot = str(event.data.get("bot"))
            if event.data.get("done"):
                self.metrics.bot_requests.labels(bot).inc()
            elif "error" in event.data:
                self.metrics.bot_requests.labels(bot).inc()
                self.metrics.bot_failures.labels(bot).inc()
        self.carry_out([Broadcast(event)], None)

    async def append(self, draft: Draft) -> None:
        """Make ``draft`` durable and broadcast it, like a client's message."""
        waiter = Waiter()
        draft.origin = waiter
        self.pipeline.drafts.put_nowait(draft)
        await waiter.future

    def broadcast(self, frame: Frame) -> None:
        for conn in list(self.conns.values()):
            conn.push(frame)

    def broadcast_diff(self, data: dict[str, Any]) -> None:
        """A large room's ``presence-diff``: each connection gets what it holds (§8)."""
        diff = WindowedDiff(data, self.core.presence.order.key_of)
        changed = diff.counts != self._diff_counts
        self._diff_counts = diff.counts
        diff.send(list(self.conns.values()), self.core.presence, changed)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("saving bot state failed", exc_info=task.exception())
