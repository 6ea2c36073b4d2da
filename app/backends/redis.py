"""Redis: one chat across several server processes.

- History is a Redis Stream whose entry ids are ``<seq>-0``; one Lua script per
  batch does the idempotency check, ``INCR`` of the seq and ``XADD`` atomically,
  so all processes share one strictly increasing order. Every process tails the
  stream (``XREAD BLOCK``) and delivers durable events from it, its own too.
- The epoch lives in Redis. If Redis loses its data (a restart without
  persistence), the next script call creates a new epoch and clients resync.
- Non-durable events and state facts go over one pub/sub channel
  (:mod:`app.backends.redis_broker`). Live peers are
  mirrored in a hash so a new process learns who is online, and each process
  refreshes a heartbeat key; a process whose key stays missing for ``node_ttl``
  is declared dead and exactly one survivor (a ``SET NX`` lock) reaps its peers.

All keys share the hash tag ``{lastra}`` (configurable prefix) so the script's
keys live in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.core import Draft
from app.logs import redact

from .base import Committed, Record, StoreUnavailable, new_epoch

__all__ = ["RedisStore"]

log = logging.getLogger("lastra.redis")

IDEMPOTENCY_TTL = 24 * 3600

APPEND = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3])
end
local limit = tonumber(ARGV[1])
local out = {epoch}
local n = (#ARGV - 4) / 5
for i = 0, n - 1 do
  local b = 5 + i * 5
  local typ, user, client, id, data = ARGV[b], ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]
  local key = false
  local prev = false
  if user ~= '' and client ~= '' then
    key = ARGV[3] .. epoch .. ':' .. user .. ':' .. client
    prev = redis.call('GET', key)
  end
  if prev then
    table.insert(out, 'dup')
    table.insert(out, prev)
  else
    local seq = redis.call('INCR', KEYS[1])
    local full = string.sub(data, 1, -2) .. ',"seq":' .. seq .. '}'
    if typ == 'clear' then
      redis.call('XTRIM', KEYS[3], 'MINID', seq)
    end
    redis.call('XADD', KEYS[3], 'MAXLEN', limit, seq .. '-0', 't', typ, 'd', full, 'e', epoch)
    if key then
      redis.call('SET', key, id .. ' ' .. seq, 'EX', tonumber(ARGV[4]))
    end
    table.insert(out, 'new')
    table.insert(out, tostring(seq))
  end
end
return out
"""


#: Entries kept in the stream beyond ``HISTORY_LIMIT``: slack for a process whose
#: tail falls behind under load (it would otherwise find a gap and resync everyone),
#: and longer resumes. ``history``/``recent`` still show only the newest limit.
TAIL_SLACK = 10_000


def _client(url: str) -> aioredis.Redis:
    # RESP2 pinned: reply shapes (XREAD as a list of [stream, entries]) stay the same
    # whichever default a redis-py release picks. A blocking pool: a burst of
    # connects waits for a free connection instead of failing with "Too many". Each
    # client owns its pool, so closing the store closes its sockets (the plain
    # constructor would leave them open).
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=5,
        socket_timeout=5,
        socket_connect_timeout=3,
        protocol=2,
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: ``aclose()`` disconnects it


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


async def _close_pubsub(pubsub: Any) -> None:
    """``PubSub.aclose()``, behind an ``Any`` on purpose.

    redis-py's annotations for it change between releases (untyped in some,
    typed in others), so a ``type: ignore`` at the call site breaks mypy
    whichever way the next release goes; this one line is the only untyped call.
    """
    await pubsub.aclose()


class RedisStore:
    shared = True

    def __init__(self, url: str, history_limit: int = 256, prefix: str = "{lastra}") -> None:
        self.url = url
        self.history_limit = history_limit
        self._r = _client(url)
        self._k_seq = f"{prefix}:seq"
        self._k_epoch = f"{prefix}:epoch"
        self._k_events = f"{prefix}:events"
        self._k_idem = f"{prefix}:idem:"
        self._k_bots = f"{prefix}:bots"
        self._k_probe = f"{prefix}:ready-probe"
        self._epoch = ""
        self._append = self._r.register_script(APPEND)

    @property
    def epoch(self) -> str:
        return self._epoch

    async def open(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self._epoch = await self._current_epoch()
                return
            except RedisError:
                if time.monotonic() > deadline:
                    raise
                log.warning("waiting for Redis at %s", redact(self.url))
                await asyncio.sleep(1)

    async def _current_epoch(self) -> str:
        await self._r.set(self._k_epoch, new_epoch(), nx=True)
        value: Any = await self._r.get(self._k_epoch)
        return bytes(value).decode() if value else ""

    async def close(self) -> None:
        await self._r.aclose()

    async def ping(self) -> None:
        """A real write: a read-only replica, ``MISCONF`` or ``OOM`` fail here, as appends
        would, where ``PING`` still answers."""
        try:
            await self._r.set(self._k_probe, b"1", ex=60)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def append(self, drafts: Sequence[Draft]) -> list[Committed]:
        keep = self.history_limit + TAIL_SLACK
        args: list[Any] = [keep, new_epoch(), self._k_idem, IDEMPOTENCY_TTL]
        for d in drafts:
            data = orjson.dumps(d.data)
            args += [d.type, d.user_id or "", d.client_id or "", d.id, data]
        try:
            raw = await self._append(keys=[self._k_seq, self._k_epoch, self._k_events], args=args)
        except RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        self._epoch = bytes(raw[0]).decode()
        out: list[Committed] = []
        for i, draft in enumerate(drafts):
            status, value = bytes(raw[1 + 2 * i]), bytes(raw[2 + 2 * i]).decode()
            if status == b"dup":
                first_id, _, first_seq = value.partition(" ")
                out.append(Committed(int(first_seq), first_id))
            else:
                data = orjson.dumps(draft.data)[:-1] + b',"seq":' + value.encode() + b"}"
                out.append(Committed(int(value), None, Record(int(value), draft.type, data)))
        return out

    def _records(self, entries: list[Any]) -> list[Record]:
        return [
            Record(_seq_of(eid), bytes(fields[b"t"]).decode(), bytes(fields[b"d"]))
            for eid, fields in entries
        ]

    async def since(self, seq: int) -> list[Record] | None:
        last = await self.last_seq()
        if seq >= last:
            return [] if seq == last else None
        entries: Any = await self._r.xrange(self._k_events, min=f"{seq + 1}-0", max="+")
        records = self._records(entries)
        if not records or records[0].seq != seq + 1:
            oldest: Any = await self._r.xrange(self._k_events, count=1)
            if not oldest or _seq_of(oldest[0][0]) > seq + 1:
                return None
            if not records or records[0].seq != seq + 1:
                return None  # a gap inside the range: not continuous
        return records

    async def recent(self, limit: int) -> list[Record]:
        entries: Any = await self._r.xrevrange(self._k_events, count=limit)
        return list(reversed(self._records(entries)))

    async def last_seq(self) -> int:
        value = await self._r.get(self._k_seq)
        return int(value) if value else 0

    async def bot_states(self) -> dict[str, bool]:
        raw: Any = await self._r.hgetall(self._k_bots)
        return {bytes(k).decode(): v == b"1" for k, v in raw.items()}

    async def set_bot_state(self, name: str, enabled: bool) -> None:
        await self._r.hset(self._k_bots, name, "1" if enabled else "0")

    async def _reset(self, epoch: str) -> str | None:
        """Redis's epoch when it is no longer ``epoch`` (its data was lost), else None."""
        current = await self._current_epoch()
        if current == epoch:
            return None
        log.warning("history was reset (epoch %s -> %s): clients resync", epoch, current)
        self._epoch = current
        return current

    async def tail(self, after_seq: int) -> AsyncIterator[list[Record]]:
        """XREAD from ``after_seq`` forever; an empty list means 'resync everyone'.

        The tail keeps its own idea of the epoch (``append`` may already have seen
        a new one), asks Redis for it after every error and idle read, and every
        entry carries the epoch it was written in: entries of a new epoch are never
        delivered as if they continued the old one.
        """
        last = after_seq
        epoch = self._epoch
        backoff = 0.2
        check = False  # ask Redis for its epoch before the next read
        while True:
            try:
                if check:
                    check = False
                    if (reset := await self._reset(epoch)) is not None:
                        epoch, last = reset, 0
                        yield []
                        continue
                resp: Any = await self._r.xread(
                    {self._k_events: f"{last}-0"}, block=1000, count=1000
                )
                backoff = 0.2
            except (RedisError, OSError):
                log.warning("Redis unreachable; tail retries in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                check = True  # Redis may come back empty
                continue
            if not resp:
                check = True
                continue
            entries = resp[0][1]
            marker = epoch.encode()
            if any(fields.get(b"e", marker) != marker for _, fields in entries):
                # written in another epoch: Redis lost its data while we were away
                with contextlib.suppress(RedisError, OSError):
                    if (reset := await self._reset(epoch)) is not None:
                        epoch, last = reset, 0
                        yield []
                        continue
            records = self._records(entries)
            if records and records[0].seq != last + 1:
                log.warning("stream gap after seq %d (trimmed while away): resync", last)
                last = records[-1].seq
                yield []
                continue
            if records:
                last = records[-1].seq
                yield records
