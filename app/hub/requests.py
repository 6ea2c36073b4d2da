"""Request correlation: who waits for the answer to a request, and where it goes.

A request comes from a WebSocket frame (the answer is a frame to that
connection, matched by the client's ``ref``), or from a POST or the bots' own
appends (a :class:`Waiter`: the answer resolves its future). :func:`deliver`
routes one answer to either; a POST whose response is already gone (a bot reply
that failed late) gets its answer on the sender's stream instead (§6).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from app.core import ClientError, Event
from app.metrics import Metrics
from app.wire import Frame, encode_event

from .connection import Connection

__all__ = ["Origin", "Waiter", "deliver"]


class Waiter:
    """One request awaiting its answer: a POST, or an append made by the server itself.

    ``user_id``/``peer_id`` name the sender of a POST, so that an answer arriving
    after the response was sent still reaches it (on its stream); an internal
    append has neither.
    """

    __slots__ = ("future", "peer_id", "user_id")

    def __init__(self, user_id: str | None = None, peer_id: str | None = None) -> None:
        self.future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.user_id = user_id
        self.peer_id = peer_id

    def settle(self, event: Event) -> bool:
        """Resolve with ``event`` (an ``error`` raises at the awaiter); False if already done."""
        if self.future.done():
            return False
        if event.type == "error":
            d = event.data
            self.future.set_exception(ClientError(d["code"], d["message"], d.get("ref")))
        else:
            self.future.set_result(event.data)
        return True

    def done(self, data: dict[str, Any] | None = None) -> None:
        """Resolve with ``data`` (``{}``: accepted, nothing to say) unless already answered."""
        if not self.future.done():
            self.future.set_result({} if data is None else data)


#: where an answer goes: a connection (WebSocket ref), a waiter, or nowhere
Origin = Connection | Waiter | None


def deliver(
    origin: Origin,
    event: Event,
    metrics: Metrics,
    streams_of: Callable[[Waiter], list[Connection]],
) -> None:
    """Send ``event`` (an answer: ack, error, pong) to whoever waits for it."""
    if isinstance(origin, Connection):
        if event.type == "error":
            metrics.error(str(event.data.get("code")), origin.transport)
        origin.push(encode_event(event))
    elif isinstance(origin, Waiter) and not origin.settle(event) and origin.user_id:
        # the response is gone: late answers go to the sender's stream(s)
        if event.type == "error":
            metrics.error(str(event.data.get("code")), "sse")
        frame: Frame = encode_event(event)
        for target in streams_of(origin):
            target.push(frame)
