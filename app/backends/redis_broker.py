"""Redis pub/sub between processes: the broker, and the only place its messages are dicts.

Messages are :data:`~app.backends.base.BrokerMessage` values inside a process;
:func:`to_wire` and :func:`from_wire` are the edge, and keep the JSON shape every
release has sent (``{"k": "fact" | "frame" | "send", ...}``), so processes of two
releases can share a channel during a rolling deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.exceptions import RedisError

from app.core import Fact, PeerCard
from app.core.facts import (
    PeerDown,
    PeerUp,
    PeerUpdate,
    card_from_wire,
    card_to_wire,
    fact_from_wire,
    fact_to_wire,
)

from .base import BrokerMessage, FactMessage, FrameMessage, SendMessage, SyncMessage
from .redis import _client, _close_pubsub

__all__ = ["RedisBroker", "from_wire", "to_wire"]

log = logging.getLogger("lastra.redis")


def to_wire(msg: BrokerMessage) -> dict[str, Any]:
    """A broker message as the JSON object published on the channel."""
    if isinstance(msg, FactMessage):
        return {"k": "fact", "fact": fact_to_wire(msg.fact)}
    if isinstance(msg, FrameMessage):
        return {"k": "frame", "t": msg.type, "json": msg.text}
    if isinstance(msg, SendMessage):
        return {"k": "send", "peer": msg.peer_id, "t": msg.type, "json": msg.text}
    return {"k": "sync", "peers": [card_to_wire(card) for card in msg.peers]}


def from_wire(raw: dict[str, Any]) -> BrokerMessage | None:
    """The message a channel object describes; None when malformed or unknown."""
    kind, text, kind_of_event = raw.get("k"), raw.get("json"), raw.get("t")
    if kind == "fact":
        fact = fact_from_wire(raw.get("fact"))
        return FactMessage(fact) if fact is not None else None
    if kind in ("frame", "send") and isinstance(text, str) and isinstance(kind_of_event, str):
        if kind == "frame":
            return FrameMessage(kind_of_event, text)
        peer = raw.get("peer")
        return SendMessage(peer, kind_of_event, text) if isinstance(peer, str) else None
    return None


class RedisBroker:
    """Pub/sub fan-out, the live-peer registry and process heartbeats."""

    def __init__(self, url: str, prefix: str = "{lastra}", node_ttl: float = 6.0) -> None:
        self.url = url
        self.node = "n_" + uuid.uuid4().hex[:10]
        self.node_ttl = node_ttl
        self._r = _client(url)
        # pub/sub ignores the database number: name it in the channel, so two chats
        # on two databases of one Redis never hear each other
        db = self._r.connection_pool.connection_kwargs.get("db", 0)
        self._channel = f"{prefix}:bus:{db}"
        self._k_peers = f"{prefix}:peers"
        self._k_node = f"{prefix}:node:"
        self._k_reap = f"{prefix}:reap:"
        self._k_flag = f"{prefix}:flag:"
        self._outbox: asyncio.Queue[BrokerMessage] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._missing_since: dict[str, float] = {}

    async def open(self) -> list[Fact]:
        await self._r.set(self._k_node + self.node, "1", px=int(self.node_ttl * 1000))
        self._writer = asyncio.create_task(self._write(), name="lastra-redis-publish")
        return [PeerUp(card) for card in await self._peer_cards()]

    async def _peer_cards(self) -> list[PeerCard]:
        """The registry's peers of other processes."""
        raw = await self._r.hgetall(self._k_peers)
        cards = [card_from_wire(orjson.loads(v)) for v in raw.values()]
        return [c for c in cards if c is not None and c.node != self.node]

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), 2)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        with contextlib.suppress(RedisError, OSError):
            await self._r.delete(self._k_node + self.node)
        await self._r.aclose()

    def publish(self, message: BrokerMessage) -> None:
        self._outbox.put_nowait(message)

    async def _write(self) -> None:
        """Publish in order, batched; mirror peer facts into the registry hash."""
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 256:
                batch.append(self._outbox.get_nowait())
            pipe = self._r.pipeline(transaction=False)
            for msg in batch:
                if isinstance(msg, FactMessage):
                    fact = msg.fact
                    if isinstance(fact, PeerUp | PeerUpdate):
                        wire = card_to_wire(fact.peer)
                        pipe.hset(self._k_peers, fact.peer.peer_id, orjson.dumps(wire))
                    elif isinstance(fact, PeerDown):
                        pipe.hdel(self._k_peers, fact.peer_id)
                pipe.publish(self._channel, orjson.dumps({**to_wire(msg), "n": self.node}))
            try:
                await pipe.execute()
            except (RedisError, OSError):
                log.warning("Redis unreachable: %d fan-out messages dropped", len(batch))
            finally:
                for _ in batch:
                    self._outbox.task_done()

    async def listen(self) -> AsyncIterator[BrokerMessage]:
        backoff = 0.2
        resync = False
        while True:
            pubsub = self._r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                if resync:  # what we missed while away: the registry is the truth
                    yield SyncMessage(tuple(await self._peer_cards()))
                backoff = 0.2
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    raw = orjson.loads(message["data"])
                    if not isinstance(raw, dict) or raw.get("n") == self.node:
                        continue
                    msg = from_wire(raw)
                    if msg is not None:
                        yield msg
                    else:  # a newer process may know more kinds
                        log.debug("ignored a message from another process: %r", raw)
            except (RedisError, OSError):
                log.warning("Redis pub/sub lost; resubscribing in %.1fs", backoff)
                resync = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    await _close_pubsub(pubsub)

    async def load_flag(self, name: str) -> dict[str, Any] | None:
        raw: Any = await self._r.get(self._k_flag + name)
        value = orjson.loads(raw) if raw else None
        return value if isinstance(value, dict) else None

    async def save_flag(self, name: str, value: dict[str, Any]) -> None:
        await self._r.set(self._k_flag + name, orjson.dumps(value))

    async def heartbeat(self, local_peers: list[PeerCard]) -> list[str]:
        now = time.monotonic()
        pipe = self._r.pipeline(transaction=False)
        pipe.set(self._k_node + self.node, "1", px=int(self.node_ttl * 1000))
        for peer in local_peers:  # self-heals the registry after a Redis restart
            pipe.hset(self._k_peers, peer.peer_id, orjson.dumps(card_to_wire(peer)))
        pipe.hgetall(self._k_peers)
        results = await pipe.execute()
        registry: dict[bytes, bytes] = results[-1]
        by_node: dict[str, list[bytes]] = {}
        for peer_id, raw in registry.items():
            node = str(orjson.loads(raw).get("node", ""))
            if node and node != self.node:
                by_node.setdefault(node, []).append(peer_id)
        dead: list[str] = []
        for node, peer_ids in by_node.items():
            if await self._r.exists(self._k_node + node):
                self._missing_since.pop(node, None)
                continue
            first = self._missing_since.setdefault(node, now)
            if now - first < self.node_ttl:
                continue  # maybe Redis restarted and it has not re-registered yet
            lock = await self._r.set(self._k_reap + node, self.node, nx=True, ex=60)
            if lock:
                await self._r.hdel(self._k_peers, *peer_ids)
                dead.append(node)
            self._missing_since.pop(node, None)
        return dead
