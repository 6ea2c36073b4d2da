"""The tasks that make several processes one chat (a shared store and a broker).

- :meth:`Cluster.tail`: deliver durable events appended by any process, in ``seq``
  order (this process's own too: all clients see one order);
- :meth:`Cluster.listen`: other processes' facts, resyncs and non-durable frames;
- :meth:`Cluster.heartbeat`: prove this process alive and reap dead ones' peers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, assert_never

from app.backends.base import (
    BrokerMessage,
    FactMessage,
    FrameMessage,
    SendMessage,
    SharedStore,
    SyncMessage,
)
from app.core import CloseCode
from app.core.facts import BotToggled
from app.wire import Frame, decode, frame_from_record

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["HEARTBEAT_EVERY", "Cluster"]

log = logging.getLogger("lastra.hub")

HEARTBEAT_EVERY = 2.0


class Cluster:
    """The hub's side of the broker and the shared store."""

    def __init__(self, hub: Hub, store: SharedStore) -> None:
        self.hub = hub
        self.store = store

    async def start(self) -> list[asyncio.Task[None]]:
        after = await self.store.last_seq()
        return [
            asyncio.create_task(self.tail(after), name="lastra-tail"),
            asyncio.create_task(self.listen(), name="lastra-listen"),
            asyncio.create_task(self.heartbeat(), name="lastra-heartbeat"),
        ]

    async def tail(self, after: int) -> None:
        """Deliver durable events appended by any process, in seq order."""
        hub, store = self.hub, self.store
        async for records in store.tail(after):
            if not records:
                log.warning("history was reset (new epoch %s): clients resync", store.epoch)
                for conn in list(hub.conns.values()):
                    conn.close(CloseCode.RESTART, "history-reset")
                continue
            for rec in records:
                hub.broadcast(frame_from_record(rec.type, rec.seq, rec.data, store.epoch))
                if rec.type == "clear" and hub.bots is not None:
                    hub.bots.on_clear()  # a clear on any process cancels replies here too

    async def listen(self) -> None:
        """Other processes' facts and frames."""
        async for msg in self.hub.broker.listen():
            try:
                self.receive(msg)
            except Exception:
                log.exception("applying a message from another process failed: %r", msg)

    def receive(self, msg: BrokerMessage) -> None:
        """One message of another process: a fact, a resync, or frames for our clients."""
        hub = self.hub
        now = time.monotonic()
        match msg:
            case FactMessage(fact):
                hub.carry_out(hub.core.apply(fact, now), None)
                if isinstance(fact, BotToggled) and hub.bots is not None:
                    hub.bots.on_toggle(fact.name, fact.enabled)
            case SyncMessage(peers):
                hub.carry_out(hub.core.resync(list(peers), now), None)
            case FrameMessage("presence-diff", text) if '"total":' in text:
                hub.broadcast_diff(decode(text)["data"])  # a large room's: cut per client
            case FrameMessage(kind, text):
                hub.broadcast(Frame(kind, text.encode(), None, None))
                if kind == "presence-diff":  # the room is small again, by another's change
                    hub.carry_out(hub.core.resync_held(), None)
            case SendMessage(peer_id, kind, text):
                conn = hub.conns.get(peer_id)
                if conn is not None:
                    conn.push(Frame(kind, text.encode(), None, None))
            case _:
                assert_never(msg)

    async def heartbeat(self) -> None:
        """Prove this process alive; reap the peers of processes that died."""
        hub = self.hub
        while True:
            try:
                peers = [p.fact() for p in hub.core.local_peers()]
                for node in await hub.broker.heartbeat(peers):
                    log.warning("process %s stopped answering: its users leave", node)
                    hub.carry_out(hub.core.reap(node, time.monotonic()), None)
            except Exception:
                log.warning("broker heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT_EVERY)
