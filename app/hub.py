"""The asyncio pump around the sans-I/O core.

The hub owns the live connections, carries out the core's outputs, runs the
durable pipeline (drafts → store → ``committed``) and the timer. Transports
hand it authenticated connections and decoded frames; they never touch the core
directly, and the core never sees a socket.

Ordering: one pipeline task appends drafts in batches and broadcasts them in
``seq`` order, so every client sees durable events in one order. A connection
that is still being synced (ready, replay, snapshots) buffers broadcasts and
drops durable ones it already got, by ``seq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, assert_never, cast

import orjson

from app.backends.base import (
    Broker,
    BrokerMessage,
    Committed,
    FactMessage,
    FrameMessage,
    SendMessage,
    SharedStore,
    Store,
    SyncMessage,
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
    Peer,
    Publish,
    Reply,
    SaveBotState,
    Send,
    Tally,
    parse,
)
from app.core.facts import BotToggled
from app.core.messages import ClientMessage
from app.metrics import Metrics
from app.transports.codec import (
    Frame,
    compact,
    decode,
    encode_event,
    frame_from_record,
    history_frame,
)

__all__ = ["BotService", "Connection", "Hub"]

log = logging.getLogger("lastra.hub")

HEARTBEAT_EVERY = 2.0


class Connection:
    """One client connection's outbound side: a bounded queue a writer drains.

    ``push`` never awaits, so a broadcast never waits on a slow client; a client
    whose queue overflows (``limit`` frames or ``max_bytes`` bytes, whichever comes
    first: one signal may carry 64 KiB) is closed with 4409 and resumes on reconnect. The
    writer is either a task awaiting :meth:`next_batch` (SSE, plain ASGI) or a
    ``notify`` callback that writes synchronously (the direct path for both
    transports under ``python -m app``: no task and no event per connection).

    A client that stops reading altogether blocks its writer in the kernel's
    send buffer, so a 4409/4408 close may never be written: ``ABORT_AFTER``
    seconds after such a close, ``on_abort`` (set by the transport) lets go of
    it (no ghost stays in presence), and ``KILL_AFTER`` seconds later the
    transport's tasks are cancelled. In between, a client that reads again still
    gets its close code.
    """

    ABORT_AFTER = 5.0
    KILL_AFTER = 60.0

    __slots__ = (
        "_abort",
        "_bytes",
        "_extra",
        "_extra_bytes",
        "_pending",
        "_pending_bytes",
        "_queue",
        "_wake",
        "address",
        "admitted",
        "close_code",
        "close_reason",
        "closing",
        "identity",
        "last_seq",
        "limit",
        "max_bytes",
        "notify",
        "on_abort",
        "peer",
        "syncing",
        "transport",
    )

    #: the default byte bound of the queue (the hub sets its own at ``admit``)
    MAX_BYTES = 4 * 1024 * 1024

    def __init__(self, identity: Identity, transport: str, limit: int) -> None:
        self.identity = identity
        self.transport = transport
        self.limit = limit
        self.max_bytes = self.MAX_BYTES
        self._bytes = 0  # payload bytes in ``_queue``
        self._pending_bytes = 0
        self._extra_bytes = 0
        self.address = ""  # the client's address, for the per-address cap
        self.peer = Peer(
            "p_" + uuid.uuid4().hex[:16], identity.user_id, identity.user_name, transport
        )
        self._queue: list[Frame] = []
        self._pending: list[Frame] = []
        self._wake: asyncio.Event | None = None  # made by the first next_batch that waits
        #: called when the queue stops being empty or the connection starts closing
        self.notify: Callable[[Connection], None] | None = None
        self.closing = False
        self.close_code = 1000
        self.close_reason = ""
        self.last_seq = -1
        self.syncing = True
        self._extra = 0  # room for the greeting beyond ``limit`` (a replay may be long)
        self._abort: asyncio.TimerHandle | None = None
        self.on_abort: Callable[[], None] | None = None
        self.admitted = False  # holds a place under the connection caps (Hub.admit)

    @property
    def peer_id(self) -> str:
        return self.peer.peer_id

    def push(self, frame: Frame) -> None:
        if self.closing:
            return
        size = len(frame.json)
        if self.syncing:
            self._pending.append(frame)
            self._pending_bytes += size
            if len(self._pending) > self.limit or self._pending_bytes > self.max_bytes:
                self.close(CloseCode.SLOW, "slow-consumer")
            return
        if frame.seq is not None:
            if frame.seq <= self.last_seq:
                return  # already delivered by replay
            self.last_seq = frame.seq
        queue = self._queue
        if (
            len(queue) >= self.limit + self._extra
            or self._bytes + size > self.max_bytes + self._extra_bytes
        ):
            self.close(CloseCode.SLOW, "slow-consumer")
            return
        self._bytes += size
        queue.append(frame)
        if len(queue) == 1:  # a writer is idle only while the queue is empty
            self._signal()

    def _signal(self) -> None:
        if self.notify is not None:
            self.notify(self)
        elif self._wake is not None:
            self._wake.set()

    def start(self, greeting: list[Frame]) -> None:
        """Queue the greeting, then what arrived while it was built, minus duplicates.

        The greeting (ready + a replay of up to ``HISTORY_LIMIT`` events) does not
        count against ``limit``: a client that missed more than a queue's worth must
        still be able to catch up.
        """
        pending, self._pending = self._pending, []
        self._pending_bytes = 0
        self.syncing = False
        self._extra = len(greeting)
        self._extra_bytes = sum(len(frame.json) for frame in greeting)
        for frame in greeting:
            self.push(frame)
        for frame in pending:
            self.push(frame)

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to close. Overflow drops the queue (the client resumes)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.close_reason = reason
        if code == CloseCode.SLOW:
            self._queue.clear()
            self._pending.clear()
            self._bytes = self._pending_bytes = 0
        if code in (CloseCode.SLOW, CloseCode.HEARTBEAT):
            loop = asyncio.get_running_loop()
            self._abort = loop.call_later(self.ABORT_AFTER, self._run_abort)
        self._signal()

    def _run_abort(self) -> None:
        self._abort = None
        if self.on_abort is not None:
            self.on_abort()

    def finished(self) -> None:
        """The transport ended the connection itself: no abort needed."""
        if self._abort is not None:
            self._abort.cancel()
            self._abort = None
        self.on_abort = None

    def take(self) -> list[Frame]:
        """Everything queued, in order; the queue is empty afterwards."""
        batch, self._queue = self._queue, []
        self._extra = self._extra_bytes = self._bytes = 0
        return batch

    async def next_batch(self, idle: float | None = None) -> list[Frame] | None:
        """Frames to write now; None once closing and drained.

        With ``idle``, raises ``TimeoutError`` after that many seconds with nothing
        to write (``asyncio.timeout``: no task per wait, unlike ``wait_for``).
        """
        while not self._queue:
            if self.closing:
                return None
            wake = self._wake
            if wake is None:
                wake = self._wake = asyncio.Event()
            wake.clear()
            if idle is None:
                await wake.wait()
            else:
                async with asyncio.timeout(idle):
                    await wake.wait()
        return self.take()

    def queued(self) -> int:
        return len(self._queue)


class PostRequest:
    """A POST being answered, and where an answer goes once its response is sent.

    A bot reply that fails after ``POST /api/ai-request`` returned must still
    reach the requester (§6): late answers go to the sender's stream.
    """

    __slots__ = ("future", "peer_id", "user_id")

    def __init__(self, user_id: str, peer_id: str | None) -> None:
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.user_id = user_id
        self.peer_id = peer_id


class _PresenceBase:
    """A shared presence snapshot and the user versions it holds."""

    __slots__ = ("frame", "generation", "versions")

    def __init__(self, generation: int, frame: Frame, versions: dict[str, int]) -> None:
        self.generation = generation
        self.frame = frame
        self.versions = versions


Origin = Connection | PostRequest | asyncio.Future[Any] | None


class BotService(Protocol):
    """What the hub needs from the bots (``app.bots``); all calls return at once."""

    def on_chat(self, data: dict[str, Any]) -> None:
        """A chat message (user or bot) was committed; ``data`` is the chat event data."""

    def ask(self, request: AskBot, origin: Origin) -> None:
        """An ``ai-request``; on failure call ``hub.fail(origin, ClientError(...))``."""

    def on_clear(self) -> None:
        """The chat was cleared: cancel replies in flight."""

    def on_toggle(self, name: str, enabled: bool) -> None:
        """A bot was enabled or disabled: cancel its reply in flight when disabled."""

    async def close(self) -> None:
        """Shutdown: cancel everything (upstream requests included)."""


class Hub:
    """Connections + core + store, glued by asyncio."""

    def __init__(
        self,
        core: Chat,
        store: Store,
        broker: Broker | None = None,
        *,
        ice_servers: Callable[[str], list[Any]] | None = None,
        metrics: Metrics | None = None,
        max_connections: int = 10_000,
        max_user_connections: int = 20,
        max_address_connections: int = 100,
        max_queue_bytes: int = Connection.MAX_BYTES,
    ) -> None:
        from app.backends.memory import MemoryBroker

        self.core = core
        self.store = store
        self.metrics = metrics or Metrics()
        self.max_connections = max_connections
        self.max_user_connections = max_user_connections
        self.max_address_connections = max_address_connections
        self.max_queue_bytes = max_queue_bytes
        self._per_user: dict[str, int] = {}
        self._per_address: dict[str, int] = {}
        self._admitted = 0
        self._history_cache: tuple[tuple[str, int], Frame, int | None] | None = None
        self._presence_base: _PresenceBase | None = None
        self._user_json: dict[str, tuple[int, bytes]] = {}
        self.broker: Broker = broker or MemoryBroker()
        #: several processes share this chat: fan out through the broker
        self.clustered = store.shared
        #: userId → the ICE servers for ``ready`` (TURN credentials are per user)
        self.ice_servers: Callable[[str], list[Any]] = ice_servers or (lambda _user: [])
        self.conns: dict[str, Connection] = {}
        self._drafts: asyncio.Queue[Draft] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.bots: BotService | None = None

    # --------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.store.open()
        for name, enabled in (await self.store.bot_states()).items():
            if name in self.core.bots:
                self.core.bots[name].enabled = enabled
        now = time.monotonic()
        for fact in await self.broker.open():
            self.core.apply(fact, now)  # our own peers: none yet, so no outputs
        self._tasks = [
            asyncio.create_task(self._pipeline(), name="lastra-pipeline"),
            asyncio.create_task(self._timer(), name="lastra-timer"),
        ]
        if self.clustered:
            shared = cast(SharedStore, self.store)
            after = await shared.last_seq()
            self._tasks += [
                asyncio.create_task(self._tail(shared, after), name="lastra-tail"),
                asyncio.create_task(self._listen(), name="lastra-listen"),
                asyncio.create_task(self._heartbeat(), name="lastra-heartbeat"),
            ]

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
            await asyncio.wait_for(self._drained(), timeout)
        if self.bots is not None:
            await self.bots.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.broker.close()
        await self.store.close()

    async def _drained(self) -> None:
        await self._drafts.join()

    # ------------------------------------------------------------- connections

    def admit(self, conn: Connection) -> str | None:
        """Reserve a place for ``conn``, or say why it must be refused.

        The place is taken now, not at :meth:`attach`, so that concurrent opens
        cannot all pass the caps before any of them is registered; :meth:`detach`
        (or :meth:`release`) gives it back. ``conn.address`` (set by the transport)
        counts against the per-address cap: one address cannot hold every place by
        minting many users.
        """
        user_id, address = conn.identity.user_id, conn.address
        if self.closing:
            reason = "server-restart"
        elif self._admitted >= self.max_connections:
            reason = "server-full"
        elif self._per_user.get(user_id, 0) >= self.max_user_connections:
            reason = "too-many-connections"
        elif address and self._per_address.get(address, 0) >= self.max_address_connections:
            reason = "address-full"
        else:
            conn.admitted = True
            conn.max_bytes = self.max_queue_bytes
            self._admitted += 1
            self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
            if address:
                self._per_address[address] = self._per_address.get(address, 0) + 1
            return None
        self.metrics.refused.labels(reason).inc()
        return reason

    def release(self, conn: Connection) -> None:
        """Give back the place :meth:`admit` reserved (idempotent)."""
        if not conn.admitted:
            return
        conn.admitted = False
        self._admitted -= 1
        user_id = conn.identity.user_id
        _decrement(self._per_user, user_id)
        if conn.address:
            _decrement(self._per_address, conn.address)

    async def attach(self, conn: Connection, last_seq: int | None, epoch: str | None) -> None:
        """Register ``conn`` and queue its greeting: ready, replay or history, snapshots."""
        if self.closing:
            conn.close(CloseCode.RESTART, "server-restart")
            return
        self.conns[conn.peer_id] = conn
        now = time.monotonic()
        store = self.store
        try:
            replay = None
            if last_seq is not None and epoch == store.epoch:
                replay = await store.since(last_seq)
            current = await store.last_seq()
            history = await self._history(current) if replay is None else None
        except Exception:
            log.warning("store unavailable while %s connected", conn.peer_id, exc_info=True)
            self.conns.pop(conn.peer_id, None)
            conn.close(CloseCode.TRY_LATER, "store-unavailable")
            self.metrics.refused.labels("store-unavailable").inc()
            return
        self.metrics.connected(conn.transport)
        self.run(self.core.connect(conn.peer, now), conn)
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
        ready = self.core.ready_event(
            conn.peer,
            epoch=store.epoch,
            last_seq=current,
            recovered=recovered,
            ice_servers=self.ice_servers(conn.identity.user_id),
        )
        frames = [encode_event(ready)]
        if replay is not None:
            frames += [frame_from_record(r.type, r.seq, r.data, store.epoch) for r in replay]
        elif history is not None:
            frame, newest = history
            frames.append(frame)
            if newest is not None:
                conn.last_seq = newest  # pending copies of these are dropped
        frames += [
            self._presence_frame(conn.identity.user_id),
            encode_event(self.core.bot_state_event()),
        ]
        conn.start(frames)

    async def _history(self, current: int) -> tuple[Frame, int | None]:
        """The ``history`` frame, built once per (epoch, last seq) and shared.

        A crowd reconnecting after a restart would otherwise read and encode the
        same 256 messages once per client.
        """
        key = (self.store.epoch, current)
        cached = self._history_cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        recent = await self.store.recent(self.core.config.history_limit)
        frame = history_frame([r.data for r in recent if r.type == "chat"])
        newest = recent[-1].seq if recent else None
        self._history_cache = (key, frame, newest)
        return frame, newest

    def _presence_frame(self, user_id: str) -> Frame:
        """The ``presence`` snapshot for a newcomer, shared within a presence batch.

        A snapshot taken since the last flush (and since the last change no diff
        will carry) is still right for a newcomer: every later change is pending
        and reaches it with the next ``presence-diff``. So a crowd arriving within
        one batch shares one snapshot (O(users) once, not per join); only the
        newcomer's own entry is spliced in, so it sees itself at once.
        """
        presence = self.core.presence
        base = self._presence_base
        if base is None or base.generation != presence.generation:
            base = self._build_presence()
        user = presence.users.get(user_id)
        if user is None or base.versions.get(user_id) == user.version:
            return base.frame
        if user_id in base.versions:  # another tab changed it: rebuild (rare)
            return self._build_presence().frame
        parts = (
            memoryview(base.frame.json)[:-3],  # without the closing ]}}
            b"," if base.versions else b"",
            self._user_fragment(user_id),
            b"]}}",
        )
        return Frame("presence", b"".join(parts), None, None)

    def _user_fragment(self, user_id: str) -> bytes:
        user = self.core.presence.users[user_id]
        cached = self._user_json.get(user_id)
        if cached is None or cached[0] != user.version:
            cached = self._user_json[user_id] = (user.version, compact(orjson.dumps(user.wire())))
        return cached[1]

    def _build_presence(self) -> _PresenceBase:
        presence = self.core.presence
        parts = [self._user_fragment(user_id) for user_id in presence.users]
        if len(self._user_json) > 2 * len(presence.users) + 64:
            kept = self._user_json
            self._user_json = {u: kept[u] for u in presence.users if u in kept}
        body = b'{"type":"presence","data":{"users":[' + b",".join(parts) + b"]}}"
        versions = {u: entry.version for u, entry in presence.users.items()}
        base = _PresenceBase(presence.generation, Frame("presence", body, None, None), versions)
        self._presence_base = base
        return base

    def detach(self, conn: Connection, code: int | None = None) -> None:
        """The connection ended; ``code`` is the client's close code, if it closed first."""
        self.release(conn)
        if self.conns.pop(conn.peer_id, None) is not None:
            final = conn.close_code if conn.closing else 1000
            if code is not None and (not conn.closing or conn.close_code == 1006):
                final = code  # the client's own close code (it may race our failed write)
            self.metrics.disconnected(conn.transport, final)
            log.info(
                "disconnected peer=%s user=%s transport=%s code=%s",
                conn.peer_id,
                conn.identity.user_id,
                conn.transport,
                final,
            )
            self.run(self.core.disconnect(conn.peer_id, time.monotonic()), None)

    # ---------------------------------------------------------------- messages

    def frame(self, conn: Connection, raw: str | bytes) -> None:
        """One client frame from a WebSocket connection."""
        now = time.monotonic()
        self.core.touch(conn.peer_id, now)
        ref = None
        try:
            try:
                obj = decode(raw)
            except ValueError:
                raise ClientError("bad_json", "the frame is not valid JSON") from None
            if isinstance(obj, dict) and isinstance(obj.get("ref"), str):
                ref = obj["ref"][:64]
            msg = parse(obj)
            self.metrics.received(msg.type, conn.transport)
            self.run(self.core.receive(conn.identity, conn.peer_id, msg, now), conn)
        except ClientError as exc:
            self.frame_error(conn, exc)
        except Exception:
            trace = uuid.uuid4().hex[:12]
            log.exception("internal error handling a frame (trace %s)", trace)
            self.metrics.error("internal", conn.transport)
            data: dict[str, Any] = {"code": "internal", "message": f"internal error {trace}"}
            if ref is not None:
                data["ref"] = ref
            conn.push(encode_event(Event("error", data)))

    def frame_error(self, conn: Connection, err: ClientError) -> None:
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
        request = PostRequest(identity.user_id, peer_id)
        fut = request.future
        self.metrics.received(msg.type, transport)
        waits = self.run(self.core.receive(identity, peer_id, msg, time.monotonic()), request)
        if not fut.done() and not waits:
            return {}
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise ClientError(
                "internal", "the store did not answer in time", getattr(msg, "ref", None)
            ) from None

    def run(self, outputs: list[Output], origin: Origin) -> bool:
        """Carry out outputs; True when an ``Append`` will answer ``origin`` later."""
        waits = False
        for out in outputs:
            if isinstance(out, Broadcast):
                frame = encode_event(out.event)
                self.broadcast(frame)
                if self.clustered:
                    self.broker.publish(FrameMessage(frame.type, frame.text))
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
                self._drafts.put_nowait(out.draft)
                waits = waits or origin is not None
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
                    waits = waits or isinstance(origin, PostRequest)
        return waits

    def fail(self, origin: Origin, err: ClientError) -> None:
        """Answer ``origin`` with an error: a frame, a POST's error body, or (late) its stream."""
        self._deliver(origin, Event("error", err.data()))

    def answer(self, origin: Origin, data: dict[str, Any]) -> None:
        """Answer ``origin`` with ack data (POST body; WebSocket only when it has a ref)."""
        if isinstance(origin, PostRequest):
            if not origin.future.done():
                origin.future.set_result(data)
        elif origin is not None and "ref" in data:
            self._deliver(origin, Event("ack", data))

    def _deliver(self, origin: Origin, event: Event) -> None:
        if isinstance(origin, Connection):
            if event.type == "error":
                self.metrics.error(str(event.data.get("code")), origin.transport)
            origin.push(encode_event(event))
        elif isinstance(origin, PostRequest):
            fut = origin.future
            if not fut.done():
                if event.type == "error":
                    d = event.data
                    fut.set_exception(ClientError(d["code"], d["message"], d.get("ref")))
                else:
                    fut.set_result(event.data)
                return
            # the response is gone: late answers go to the sender's stream(s)
            if event.type == "error":
                self.metrics.error(str(event.data.get("code")), "sse")
            frame = encode_event(event)
            conn = self.conns.get(origin.peer_id or "")
            targets = [conn] if conn is not None else self._conns_of(origin.user_id)
            for target in targets:
                target.push(frame)
        elif isinstance(origin, asyncio.Future) and not origin.done():
            if event.type == "error":
                d = event.data
                origin.set_exception(ClientError(d["code"], d["message"], d.get("ref")))
            else:
                origin.set_result(event.data)

    def _conns_of(self, user_id: str) -> list[Connection]:
        return [c for c in self.conns.values() if c.identity.user_id == user_id]

    def broadcast_event(self, event: Event) -> None:
        """Send a non-durable event to every connection, on every process (``ai-stream``, …)."""
        if event.type == "ai-stream":  # a reply ends with exactly one done or error
            bot = str(event.data.get("bot"))
            if event.data.get("done"):
                self.metrics.bot_requests.labels(bot).inc()
            elif "error" in event.data:
                self.metrics.bot_requests.labels(bot).inc()
                self.metrics.bot_failures.labels(bot).inc()
        self.run([Broadcast(event)], None)

    async def append(self, draft: Draft) -> None:
        """Make ``draft`` durable and broadcast it, like a client's message."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        draft.origin = fut
        self._drafts.put_nowait(draft)
        await fut

    def broadcast(self, frame: Frame) -> None:
        for conn in list(self.conns.values()):
            conn.push(frame)

    # ----------------------------------------------------------------- tasks

    async def _pipeline(self) -> None:
        """Append drafts in batches, then ack and broadcast them in seq order."""
        while True:
            first = await self._drafts.get()
            batch = [first]
            while not self._drafts.empty() and len(batch) < 512:
                batch.append(self._drafts.get_nowait())
            try:
                results = await self.store.append(batch)
            except Exception:
                trace = uuid.uuid4().hex[:12]
                log.exception("store append failed (trace %s); nothing was acked", trace)
                for draft in batch:
                    err = ClientError(
                        "internal", f"could not store the message ({trace})", draft.ref
                    )
                    self._deliver(cast(Origin, draft.origin), Event("error", err.data()))
            else:
                for draft, result in zip(batch, results, strict=True):
                    self._commit(draft, result)
            for _ in batch:
                self._drafts.task_done()

    def _commit(self, draft: Draft, result: Committed) -> None:
        origin = cast(Origin, draft.origin)
        if self.bots is not None and result.first_id is None:
            if draft.type == "chat":
                self.bots.on_chat(draft.event(result.seq).data)
            elif draft.type == "clear":
                self.bots.on_clear()
        for out in self.core.committed(draft, result.seq, result.first_id):
            if isinstance(out, Broadcast):
                # Shared store: every process (this one too) delivers from the tail,
                # so all clients see one seq order.
                if result.record is not None and not self.clustered:
                    rec = result.record
                    self.broadcast(frame_from_record(rec.type, rec.seq, rec.data, self.store.epoch))
            else:
                self.run([out], origin)
        if isinstance(origin, PostRequest) and not origin.future.done():
            origin.future.set_result({})
        elif isinstance(origin, asyncio.Future) and not origin.done():
            origin.set_result({})

    async def _tail(self, store: SharedStore, after: int) -> None:
        """Deliver durable events appended by any process, in seq order."""
        async for records in store.tail(after):
            if not records:
                log.warning("history was reset (new epoch %s): clients resync", store.epoch)
                for conn in list(self.conns.values()):
                    conn.close(CloseCode.RESTART, "history-reset")
                continue
            for rec in records:
                self.broadcast(frame_from_record(rec.type, rec.seq, rec.data, store.epoch))
                if rec.type == "clear" and self.bots is not None:
                    self.bots.on_clear()  # a clear on any process cancels replies here too

    async def _listen(self) -> None:
        """Other processes' facts and frames."""
        async for msg in self.broker.listen():
            try:
                self._apply_message(msg)
            except Exception:
                log.exception("applying a message from another process failed: %r", msg)

    def _apply_message(self, msg: BrokerMessage) -> None:
        """One message of another process: a fact, a resync, or frames for our clients."""
        now = time.monotonic()
        match msg:
            case FactMessage(fact):
                self.run(self.core.apply(fact, now), None)
                if isinstance(fact, BotToggled) and self.bots is not None:
                    self.bots.on_toggle(fact.name, fact.enabled)
            case SyncMessage(peers):
                self.run(self.core.resync(list(peers), now), None)
            case FrameMessage(kind, text):
                self.broadcast(Frame(kind, text.encode(), None, None))
            case SendMessage(peer_id, kind, text):
                conn = self.conns.get(peer_id)
                if conn is not None:
                    conn.push(Frame(kind, text.encode(), None, None))
            case _:
                assert_never(msg)

    async def _heartbeat(self) -> None:
        """Prove this process alive; reap the peers of processes that died."""
        while True:
            try:
                peers = [p.fact() for p in self.core.local_peers()]
                for node in await self.broker.heartbeat(peers):
                    log.warning("process %s stopped answering: its users leave", node)
                    self.run(self.core.reap(node, time.monotonic()), None)
            except Exception:
                log.warning("broker heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def _timer(self) -> None:
        while True:
            now = time.monotonic()
            deadline = self.core.next_deadline()
            delay = 0.1 if deadline is None else min(0.1, max(0.005, deadline - now))
            await asyncio.sleep(delay)
            try:
                self.run(self.core.tick(time.monotonic()), None)
            except Exception:
                log.exception("timer tick failed")


def _decrement(counts: dict[str, int], key: str) -> None:
    """One place fewer under ``key``; no entry is kept at zero (bounded memory)."""
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("saving bot state failed", exc_info=task.exception())
