"""One bot reply (a *turn*) from waking to its last event, and its queue of deltas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from .personality import Personality
from .providers import Line

log = logging.getLogger("lastra.bots")

__all__ = ["End", "Turn", "cancel_all", "context_line", "next_item"]


@dataclass(frozen=True, slots=True)
class End:
    """The end of a turn's stream: done, or the error it failed with."""

    error: str | None = None


@dataclass(eq=False)
class Turn:
    """One bot reply, from waking to its last event."""

    id: str
    bot: Personality
    reason: str  # request | mention | chain | interject
    upto: int  # the context ends with the chat message of this seq
    asker: str
    request: str | None = None
    origin: Any = None
    ref: str | None = None
    user_id: str | None = None  # the requester of an ai-request
    queue: asyncio.Queue[str | End] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    cancelled: str | None = None
    ended: bool = False
    length: int = 0
    speaking: bool = False  # the speaker is putting it on the wire

    def end(self, error: str | None = None) -> None:
        """Queue the end of the stream (once)."""
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(End(error))


async def next_item(queue: asyncio.Queue[str | End], timeout: float | None) -> str | End | None:
    """The next queued item, or ``None`` once ``timeout`` seconds passed (``None``: wait)."""
    if timeout is None:
        return await queue.get()
    if timeout > 0:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
        # that lands as the item arrives, and the speaker then never stops (shutdown hung)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                return await queue.get()
    return queue.get_nowait() if not queue.empty() else None


async def cancel_all(tasks: list[asyncio.Task[Any] | None], timeout: float) -> None:
    """Cancel ``tasks`` and wait for them, at most ``timeout`` seconds.

    Bounded, so shutdown never hangs on a task that ignores its cancellation;
    the results of those that ended are retrieved (no "never retrieved" noise).
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()
    for task in stuck:
        log.warning("bot task %s did not stop within %.0f s", task.get_name(), timeout)


def context_line(data: dict[str, Any]) -> Line | None:
    """A context line from chat data (user and bot messages; not system ones)."""
    kind = data.get("kind")
    text = data.get("text")
    seq = data.get("seq")
    if kind not in ("user", "bot") or not isinstance(text, str) or not isinstance(seq, int):
        return None
    bot = data.get("bot") if kind == "bot" else None
    name = str(data.get("userName") or "someone")
    return Line(seq, name, text, bot if isinstance(bot, str) else None)
