"""What the core asks the I/O layer to do: server events and where they go.

The core never sends anything itself. Each call into it returns a list of
``Output`` items, in order; the caller must carry them out in that order:

- ``Send(peer_id, event)``: queue ``event`` for one connection.
- ``Broadcast(event)``: queue ``event`` for every connection (encode it once). A
  durable event (``event.seq`` set, from :meth:`Chat.committed`) with a shared
  store is delivered by every process from the store's tail instead, so that all
  clients see one ``seq`` order.
- ``Reply(event)``: answer the request being handled (a WebSocket frame to the
  sender, or a POST's response body).
- ``Append(draft)``: make ``draft`` durable (the store assigns its ``seq``), then
  call :meth:`Chat.committed` and carry out what that returns.
- ``Close(peer_id, code, reason)``: close that connection (``code``: a
  :class:`~app.core.close.CloseCode`).
- ``SaveBotState(name, enabled)``: remember a bot's enable state in the store.
- ``Publish(fact)``: tell the other server processes (if any) about a state change;
  they feed it to :meth:`Chat.apply`. A single process may ignore it.
- ``AskBot(bot, prompt, user_id, user_name, ref)``: start a bot reply (the bot
  service streams ``ai-stream`` and appends the final ``chat``); answer the
  requester with ``error ai_unavailable`` if it cannot.
- ``Tally(report, cohort, pair)``: count a client's validated report in the metrics,
  for ``cohort`` (the reporter's transport) and, for a call, the transport ``pair``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .facts import Fact
from .reports import CallOutcome, DeliveryReport

__all__ = [
    "Append",
    "AskBot",
    "Broadcast",
    "Close",
    "Draft",
    "Event",
    "Output",
    "Publish",
    "Reply",
    "SaveBotState",
    "Send",
    "Tally",
]


@dataclass(frozen=True, slots=True)
class Event:
    """One server → client envelope ``{"type", "data", "seq"?}``."""

    type: str
    data: dict[str, Any]
    seq: int | None = None

    def envelope(self) -> dict[str, Any]:
        env: dict[str, Any] = {"type": self.type, "data": self.data}
        if self.seq is not None:
            env["seq"] = self.seq
        return env


@dataclass(slots=True)
class Draft:
    """A durable event before the store has given it a ``seq``.

    ``user_id``/``client_id`` form the idempotency key of a chat message;
    ``origin`` is opaque to the core: the I/O layer uses it to route the ack.
    """

    type: str
    data: dict[str, Any]
    user_id: str | None = None
    client_id: str | None = None
    ref: str | None = None
    origin: object = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return str(self.data.get("id", ""))

    def event(self, seq: int) -> Event:
        """The durable event as broadcast: ``seq`` on the envelope and inside chat data."""
        data = dict(self.data)
        data["seq"] = seq
        return Event(self.type, data, seq)


@dataclass(frozen=True, slots=True)
class Send:
    peer_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class Broadcast:
    event: Event


@dataclass(frozen=True, slots=True)
class Reply:
    event: Event


@dataclass(frozen=True, slots=True)
class Append:
    draft: Draft


@dataclass(frozen=True, slots=True)
class Close:
    peer_id: str
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class SaveBotState:
    name: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class AskBot:
    bot: str
    prompt: str
    user_id: str
    user_name: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Publish:
    fact: Fact


@dataclass(frozen=True, slots=True)
class Tally:
    report: CallOutcome | DeliveryReport
    cohort: str
    pair: str | None = None


Output = Send | Broadcast | Reply | Append | Close | SaveBotState | AskBot | Publish | Tally
