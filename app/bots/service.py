"""The bot service the hub calls: chat messages and ``ai-request`` in, streamed replies out.

Each reply is a *turn*. A turn's thinking (the provider's stream) starts at once,
so several bots think at the same time, but a single *speaker* task puts the
turns on the wire one at a time, in the order they were started: the ``ai-stream``
events of two turns never interleave. For every turn, clients see (PROTOCOL §6)::

    ai-stream {id, bot, delta}*  then  ai-stream {id, bot, done: true}
                                       + chat {id, kind: "bot", text, ...}  (durable)
                                 or    ai-stream {id, bot, error}

Deltas are coalesced (docs/protocol.md §6): the first goes out at once, the
next no sooner than :data:`STREAM_INTERVAL` later (longer in rooms of more than
:data:`STREAM_AUDIENCE` connections, so one stream costs the room at most about
``STREAM_AUDIENCE / STREAM_INTERVAL`` deliveries per second), carrying every
token that arrived meanwhile; the end flushes what is left, so the deltas
concatenate to exactly the stored text whatever the provider's token rate.
Deltas that piled up while a turn waited its turn go out as one delta. An
interjection (nobody asked) is skipped while another one waits in line: a busy
room gets one unprompted reply at a time, not a queue of them. A failed
``ai-request`` also answers the requester with ``error ai_unavailable``; an
interjection that fails before saying anything fails quietly (nobody asked).
Turns are cancelled, upstream request included, when their bot is disabled,
when the chat is cleared, and at shutdown.

The context of a reply is the last ``context_messages`` chat messages (user and
bot, with names) up to the message that woke it; after a restart it is seeded
once from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from app.core import AskBot, ClientError, Draft, Event
from app.core.messages import MAX_TEXT_CHARS

from .ntfy import Notifier
from .personality import Personality
from .providers import Line, Prompt, Provider, ProviderError
from .triggers import CHAIN_LIMIT, INTERJECT_GAP, Triggers
from .turn import End, Turn, cancel_all, context_line, next_item

__all__ = ["BotRoom", "History", "Room"]

log = logging.getLogger("lastra.bots")

STREAM_INTERVAL = 0.1
"""Least seconds between two ``ai-stream`` deltas of one reply: at most ~10 frames/s."""

STREAM_AUDIENCE = 1_000
"""Above this many connections the interval grows with the room (``n / 10,000`` s at 0.1):
one stream costs a process at most ~10k deliveries/s (25k had cost SSE a third of its
chat capacity at N=5,000)."""

CLOSE_TIMEOUT = 2.0  # how long close() waits for the bots' tasks after cancelling them

History = Callable[[int], Awaitable[list[dict[str, Any]]]]
"""``await history(n)``: the newest ``n`` stored chat data objects, oldest first."""


class Room(Protocol):
    """What the bots need from the hub (``app.hub.Hub`` has all of it)."""

    def broadcast_event(self, event: Event) -> None: ...

    def fail(self, origin: Any, err: ClientError) -> None: ...

    def answer(self, origin: Any, data: dict[str, Any]) -> None: ...

    async def append(self, draft: Draft) -> None: ...


class BotRoom:
    """The bots of one chat room (implements ``app.hub.BotService``)."""

    def __init__(
        self,
        room: Room,
        personalities: Iterable[Personality],
        provider: Provider,
        *,
        enabled: Callable[[str], bool],
        context_messages: int = 10,
        chain_limit: int = CHAIN_LIMIT,
        interject_gap: float = INTERJECT_GAP,
        rng: random.Random | None = None,
        history: History | None = None,
        notifier: Notifier | None = None,
        max_turns: int = 16,
        clock: Callable[[], float] = time.time,
        stream_interval: float = STREAM_INTERVAL,
        audience: Callable[[], int] | None = None,
    ) -> None:
        self._room = room
        self.personalities = {p.name: p for p in personalities}
        self.provider = provider
        self._enabled = enabled
        self.context_messages = context_messages
        self.triggers = Triggers(
            self.personalities.values(), rng or random.Random(), chain_limit, interject_gap
        )
        self._history = history
        self._notifier = notifier
        self.max_turns = max_turns
        self._clock = clock
        self.stream_interval = stream_interval
        self._audience = audience
        self._lines: deque[Line] = deque(maxlen=context_messages + 64)
        self._last_seq = 0
        self._seeded = history is None
        self._seeding: asyncio.Task[None] | None = None
        self._clears = 0
        self._turns: dict[str, Turn] = {}
        self._line_up: asyncio.Queue[Turn] = asyncio.Queue()
        self._speaker: asyncio.Task[None] | None = None
        self._closed = False

    # ------------------------------------------------------------ BotService

    def on_chat(self, data: dict[str, Any]) -> None:
        """A chat message was committed: remember it, maybe wake bots, maybe push it."""
        if self._closed:
            return
        if self._notifier is not None:
            self._notifier.push(data)
        line = context_line(data)
        if line is not None:
            self._lines.append(line)
            self._last_seq = max(self._last_seq, line.seq)
        asker = str(data.get("userName") or "someone")
        for wake in self.triggers.on_message(data, self.is_enabled, now=time.monotonic()):
            if len(self._turns) >= self.max_turns:
                log.warning("too many bot replies in flight; %s stays silent", wake.bot)
                break
            if wake.reason == "interject" and self._interjection_waiting():
                log.debug("an interjection already waits in line; %s stays silent", wake.bot)
                break
            bot = self.personalities[wake.bot]
            self._start(bot, wake.reason, asker, upto=int(data.get("seq", self._last_seq)))

    def ask(self, request: AskBot, origin: Any) -> None:
        """An ``ai-request``: answer with the stream id now, stream the reply later."""
        bot = self.personalities.get(request.bot)
        problem = None
        if self._closed:
            problem = "the server is shutting down"
        elif bot is None or not self.is_enabled(bot.name):
            problem = "that bot is disabled"
        elif len(self._turns) >= self.max_turns:
            problem = "the bots are busy; try again in a moment"
        if problem is not None or bot is None:
            self._room.fail(origin, ClientError("ai_unavailable", problem or "", request.ref))
            return
        turn = self._start(
            bot,
            "request",
            request.user_name,
            upto=self._last_seq,
            request=request.prompt,
            origin=origin,
            ref=request.ref,
            user_id=request.user_id,
        )
        answer: dict[str, Any] = {"id": turn.id, "bot": bot.name}
        if request.ref is not None:
            answer["ref"] = request.ref
        self._room.answer(origin, answer)

    def on_clear(self) -> None:
        """The chat was cleared: cancel every reply, forget the context and the chain."""
        self._clears += 1
        self._lines.clear()
        self._seeded = True
        self.triggers.reset()
        for turn in list(self._turns.values()):
            self._cancel(turn, "the chat was cleared")

    def on_toggle(self, name: str, enabled: bool) -> None:
        """A bot was enabled or disabled; disabling cancels its replies."""
        if enabled:
            return
        for turn in list(self._turns.values()):
            if turn.bot.name == name:
                self._cancel(turn, f"{turn.bot.display_name} was turned off")

    async def close(self) -> None:
        """Shutdown: cancel every reply and its upstream request, then close the provider."""
        self._closed = True
        tasks = [t.task for t in self._turns.values() if t.task is not None]
        for turn in list(self._turns.values()):
            self._cancel(turn, "the server is shutting down")
        await cancel_all([*tasks, self._speaker, self._seeding], CLOSE_TIMEOUT)
        self._turns.clear()
        if self._notifier is not None:
            self._notifier.close()
        await self.provider.close()

    # ---------------------------------------------------------------- queries

    def is_enabled(self, name: str) -> bool:
        return name in self.personalities and self._enabled(name)

    def describe(self) -> list[dict[str, Any]]:
        """The bots as ``GET /api/bots`` lists them."""
        return [
            {**p.wire(), "enabled": self.is_enabled(p.name)} for p in self.personalities.values()
        ]

    @property
    def busy(self) -> int:
        """Replies started and not yet finished on the wire."""
        return len(self._turns)

    def _interjection_waiting(self) -> bool:
        """An interjection is started but not yet on the wire (waiting for the speaker)."""
        return any(t.reason == "interject" and not t.speaking for t in self._turns.values())

    def _interval(self) -> float:
        """Seconds between two deltas of a stream: longer in rooms above STREAM_AUDIENCE."""
        n = self._audience() if self._audience is not None else 0
        return self.stream_interval * max(1.0, n / STREAM_AUDIENCE)

    # ---------------------------------------------------------------- turns

    def _start(
        self,
        bot: Personality,
        reason: str,
        asker: str,
        *,
        upto: int,
        request: str | None = None,
        origin: Any = None,
        ref: str | None = None,
        user_id: str | None = None,
    ) -> Turn:
        turn = Turn(uuid.uuid4().hex, bot, reason, upto, asker, request, origin, ref, user_id)
        self._turns[turn.id] = turn
        turn.task = asyncio.create_task(self._think(turn), name=f"lastra-bot-{bot.name}")
        turn.task.add_done_callback(lambda _: turn.end(turn.cancelled or "the reply stopped"))
        self._line_up.put_nowait(turn)
        if self._speaker is None or self._speaker.done():
            self._speaker = asyncio.create_task(self._speak(), name="lastra-bot-speaker")
        log.debug("%s replies (%s), turn %s", bot.name, reason, turn.id)
        return turn

    def _cancel(self, turn: Turn, reason: str) -> None:
        if turn.cancelled is not None:
            return
        turn.cancelled = reason
        if turn.task is not None and not turn.task.done():
            turn.task.cancel()  # its done callback ends the stream
        else:
            turn.end(reason)

    async def _think(self, turn: Turn) -> None:
        """Run the provider; queue its deltas (at most MAX_TEXT_CHARS), then the end."""
        try:
            await self._seed()
            prompt = self._prompt(turn)
            async with contextlib.aclosing(self.provider.stream(prompt)) as deltas:
                async for delta in deltas:
                    room = MAX_TEXT_CHARS - turn.length
                    piece = delta[:room]
                    if piece:
                        turn.length += len(piece)
                        turn.queue.put_nowait(piece)
                    if turn.length >= MAX_TEXT_CHARS:
                        break  # closing the generator stops the upstream request
            turn.end()
        except ProviderError as exc:
            log.info("%s could not answer: %s", turn.bot.name, exc)
            turn.end(str(exc))
        except Exception:
            trace = uuid.uuid4().hex[:12]
            log.exception("bot %s failed (trace %s)", turn.bot.name, trace)
            turn.end(f"internal error {trace}")

    async def _speak(self) -> None:
        """Put the turns on the wire one at a time, in the order they started."""
        while not self._closed:  # even if a cancellation was lost, close() ends this
            turn = await self._line_up.get()
            try:
                await self._say(turn)
            except Exception:
                log.exception("bot turn %s failed on the wire", turn.id)
            finally:
                self._turns.pop(turn.id, None)

    async def _say(self, turn: Turn) -> None:
        bot = turn.bot
        turn.speaking = True
        text = ""  # what went out
        pending = ""  # arrived, held until ``due``
        due = 0.0  # monotonic time the next delta may go out
        while True:
            wait = due - time.monotonic() if pending else None
            item = await next_item(turn.queue, wait)
            while isinstance(item, str):  # coalesce what piled up
                pending += item
                item = turn.queue.get_nowait() if not turn.queue.empty() else None
            if turn.cancelled is not None:
                pending, item = "", End(turn.cancelled)
            if pending and (item is not None or time.monotonic() >= due):
                text += pending
                self._stream(turn, {"delta": pending})
                pending = ""
                due = time.monotonic() + self._interval()
            if item is None:
                continue
            error = item.error
            if error is None and not text.strip():
                error = "the model sent an empty reply"
            if error is None:
                self._stream(turn, {"done": True})
                data = {
                    "id": turn.id,
                    "ts": int(self._clock() * 1000),
                    "kind": "bot",
                    "userId": bot.user_id,
                    "userName": bot.display_name,
                    "text": text.strip(),
                    "bot": bot.name,
                }
                try:
                    await self._room.append(Draft("chat", data))
                except Exception:
                    log.exception("could not store %s's reply %s", bot.name, turn.id)
                return
            if turn.reason == "interject" and not text:
                return  # nobody asked and nothing was shown: fail quietly (it is logged)
            self._stream(turn, {"error": error})
            if turn.reason == "request":
                message = f"{bot.display_name} could not answer: {error}"
                self._fail(turn, ClientError("ai_unavailable", message, turn.ref))
            return

    def _fail(self, turn: Turn, err: ClientError) -> None:
        """Tell the requester (the hub routes a late answer to a POST to its stream)."""
        self._room.fail(turn.origin, err)

    def _stream(self, turn: Turn, fields: dict[str, Any]) -> None:
        data = {"id": turn.id, "bot": turn.bot.name, **fields}
        self._room.broadcast_event(Event("ai-stream", data))

    # -------------------------------------------------------------- context

    def _prompt(self, turn: Turn) -> Prompt:
        n = self.context_messages
        lines = [line for line in self._lines if line.seq <= turn.upto]
        roster = tuple(
            p
            for p in self.personalities.values()
            if p.name != turn.bot.name and self.is_enabled(p.name)
        )
        return Prompt(
            bot=turn.bot,
            lines=tuple(lines[-n:]) if n > 0 else (),
            interjection=turn.reason == "interject",
            request=turn.request,
            asker=turn.asker,
            roster=roster,
        )

    async def _seed(self) -> None:
        """Once: fill the context from the store (messages from before a restart)."""
        if self._seeded:
            return
        if self._seeding is None:
            self._seeding = asyncio.create_task(self._load_history())
        await asyncio.shield(self._seeding)

    async def _load_history(self) -> None:
        assert self._history is not None
        clears = self._clears
        try:
            stored = await self._history(self.context_messages + 32)
        except Exception:
            log.exception("could not read the history for the bots' context")
            return
        finally:
            self._seeded = True
        if clears != self._clears:
            return  # cleared meanwhile: what was read is gone
        merged = {line.seq: line for line in map(context_line, stored) if line is not None}
        merged.update({line.seq: line for line in self._lines})
        self._lines.clear()
        self._lines.extend(merged[seq] for seq in sorted(merged))
        if merged:
            self._last_seq = max(self._last_seq, max(merged))
