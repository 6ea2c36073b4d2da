"""Facts: the state changes one server process tells the others (``Publish``).

Each fact is a small frozen, slotted value; :data:`Fact` names the whole set and
:meth:`app.core.chat.Chat.apply` matches on it, ending in ``assert_never``, so a
new kind cannot be forgotten. Facts are objects everywhere inside a process;
only the broker's wire (the Redis edge) turns them into dicts and back, with
:func:`fact_to_wire` and :func:`fact_from_wire`. The wire name of each kind is
its ``kind``.

A malformed or unknown fact from the wire decodes to None and is dropped: a
newer process may know more kinds than this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, assert_never

__all__ = [
    "BotToggled",
    "Fact",
    "PeerCard",
    "PeerDown",
    "PeerUp",
    "PeerUpdate",
    "TypingChanged",
    "UserGone",
    "card_from_wire",
    "card_to_wire",
    "fact_from_wire",
    "fact_to_wire",
]


@dataclass(frozen=True, slots=True)
class PeerCard:
    """A peer as another process sees it: a snapshot of :class:`~app.core.presence.Peer`."""

    peer_id: str
    user_id: str
    user_name: str
    transport: str
    node: str = ""
    camera: bool = False
    mic: bool = False
    screen: bool = False
    ready: bool = False


@dataclass(frozen=True, slots=True)
class PeerUp:
    """A peer connected (or was announced again after a wrongful reap)."""

    kind: ClassVar[str] = "peer-up"
    peer: PeerCard


@dataclass(frozen=True, slots=True)
class PeerUpdate:
    """A peer's media or ready state changed."""

    kind: ClassVar[str] = "peer-update"
    peer: PeerCard


@dataclass(frozen=True, slots=True)
class PeerDown:
    """A peer disconnected."""

    kind: ClassVar[str] = "peer-down"
    peer_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class UserGone:
    """A user's grace ended on the process that owned it: the user left."""

    kind: ClassVar[str] = "user-gone"
    user_id: str


@dataclass(frozen=True, slots=True)
class TypingChanged:
    """A user started (or renewed) or stopped typing; the publisher owns the expiry."""

    kind: ClassVar[str] = "typing"
    user_id: str
    user_name: str
    on: bool


@dataclass(frozen=True, slots=True)
class BotToggled:
    """A bot was enabled or disabled."""

    kind: ClassVar[str] = "bot"
    name: str
    enabled: bool


Fact = PeerUp | PeerUpdate | PeerDown | UserGone | TypingChanged | BotToggled


# ------------------------------------------------------------------ the wire


def card_to_wire(card: PeerCard) -> dict[str, Any]:
    return {
        "peerId": card.peer_id,
        "userId": card.user_id,
        "userName": card.user_name,
        "transport": card.transport,
        "node": card.node,
        "camera": card.camera,
        "mic": card.mic,
        "screen": card.screen,
        "ready": card.ready,
    }


def card_from_wire(raw: object) -> PeerCard | None:
    """A peer card from JSON; None unless it names a peer, user, name and transport."""
    if not isinstance(raw, dict):
        return None
    names = [raw.get(key) for key in ("peerId", "userId", "userName", "transport")]
    if not all(isinstance(name, str) for name in names):
        return None
    peer_id, user_id, user_name, transport = (str(name) for name in names)
    return PeerCard(
        peer_id,
        user_id,
        user_name,
        transport,
        str(raw.get("node") or ""),
        bool(raw.get("camera")),
        bool(raw.get("mic")),
        bool(raw.get("screen")),
        bool(raw.get("ready")),
    )


def fact_to_wire(fact: Fact) -> dict[str, Any]:
    """The fact as a JSON-able dict (``f`` names the kind)."""
    body: dict[str, Any]
    match fact:
        case PeerUp(peer) | PeerUpdate(peer):
            body = {"peer": card_to_wire(peer)}
        case PeerDown(peer_id, user_id):
            body = {"peerId": peer_id, "userId": user_id}
        case UserGone(user_id):
            body = {"userId": user_id}
        case TypingChanged(user_id, user_name, on):
            body = {"userId": user_id, "userName": user_name, "on": on}
        case BotToggled(name, enabled):
            body = {"name": name, "enabled": enabled}
        case _:
            assert_never(fact)
    return {"f": fact.kind, **body}


def fact_from_wire(raw: object) -> Fact | None:
    """The fact a dict from the wire describes; None when malformed or unknown."""
    if not isinstance(raw, dict):
        return None
    kind = raw.get("f")
    if kind in ("peer-up", "peer-update"):
        card = card_from_wire(raw.get("peer"))
        if card is None:
            return None
        return PeerUp(card) if kind == "peer-up" else PeerUpdate(card)
    if kind == "peer-down":
        peer_id, user_id = raw.get("peerId"), raw.get("userId")
        if isinstance(peer_id, str):
            return PeerDown(peer_id, str(user_id or ""))
    elif kind == "user-gone":
        if isinstance(user_id := raw.get("userId"), str):
            return UserGone(user_id)
    elif kind == "typing":
        user_id, user_name = raw.get("userId"), raw.get("userName")
        if isinstance(user_id, str) and isinstance(user_name, str):
            return TypingChanged(user_id, user_name, bool(raw.get("on")))
    elif kind == "bot":
        name, enabled = raw.get("name"), raw.get("enabled")
        if isinstance(name, str) and isinstance(enabled, bool):
            return BotToggled(name, enabled)
    return None
