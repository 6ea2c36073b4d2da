"""This process's copy of the state every process shares, kept in step by facts.

Several processes, one chat: every change a process makes to shared state
(peers, typing, bots, a user's grace ending) also comes out as a ``Publish``
fact; the other processes feed it to :meth:`Replica.apply`, which updates their
tables silently: the broadcast that goes with a change is made once, by the
process that made it, and fanned out to everyone by the caller.
"""

from __future__ import annotations

from typing import assert_never

from .config import Bot, ChatConfig
from .facts import BotToggled, Fact, PeerCard, PeerDown, PeerUp, PeerUpdate, TypingChanged, UserGone
from .outputs import Output, Publish
from .presence import Peer, Presence

__all__ = ["Replica"]


class Replica:
    """The cluster side of :class:`~app.core.chat.Chat` (a base class: its tables are Chat's)."""

    config: ChatConfig
    presence: Presence
    bots: dict[str, Bot]
    #: user_id → (name, expires_at, owned); only the owner broadcasts the expiry
    _typing: dict[str, tuple[str, float, bool]]

    def _flush_presence(self, now: float) -> list[Output]:
        raise NotImplementedError

    def disconnect(self, peer_id: str, now: float) -> list[Output]:
        raise NotImplementedError

    def apply(self, fact: Fact, now: float) -> list[Output]:
        """A state change another process made (its ``Publish``); updates tables silently.

        Returns outputs only in one case: another process reaped this one's peers
        (we were frozen past the reap bound) while they are still connected here;
        then this process announces them again. (Malformed or unknown facts never
        get here: :func:`app.core.facts.fact_from_wire` drops them at the edge.)
        """
        match fact:
            case PeerUp(card) | PeerUpdate(card):
                current = self.presence.peers.get(card.peer_id)
                if current is None:
                    self.presence.add(Peer.from_fact(card), now, announce=False)
                else:
                    for name in ("camera", "mic", "screen", "ready"):
                        setattr(current, name, getattr(card, name))
                    self.presence.bump(current.user_id)
            case PeerDown(peer_id):
                mine = self.presence.peers.get(peer_id)
                if mine is not None and mine.node == self.config.node:
                    self.presence.rejoin(mine, now)
                    return [Publish(PeerUp(mine.fact())), *self._flush_presence(now)]
                self.presence.remove(peer_id, now, owned=False)
            case UserGone(user_id):
                self.presence.gone(user_id)
            case TypingChanged(user_id, user_name, on):
                if on:
                    expires = now + self.config.typing_timeout
                    self._typing[user_id] = (user_name, expires, False)
                else:
                    self._typing.pop(user_id, None)
            case BotToggled(name, enabled):
                bot = self.bots.get(name)
                if bot is not None:
                    bot.enabled = enabled
            case _:
                assert_never(fact)
        return []

    def resync(self, peers: list[PeerCard], now: float) -> list[Output]:
        """After a lost link to the other processes: their peers are exactly ``peers``.

        A user who vanished meanwhile was announced by its own process; here it is
        only removed from the clients' lists (a ``presence-diff``, no message), and
        peers that appeared meanwhile are upserted.
        """
        keep = set()
        out: list[Output] = []
        for card in peers:
            peer_id = card.peer_id
            known = peer_id in self.presence.peers
            out += self.apply(PeerUp(card), now)
            keep.add(peer_id)
            if not known:  # its upsert was lost with the link: tell our clients now
                self.presence.changed(peer_id, now)
        for peer in list(self.presence.peers.values()):
            if peer.node != self.config.node and peer.peer_id not in keep:
                self.presence.remove(peer.peer_id, now, owned=False)
                self.presence.forget(peer.user_id, now)
                self.presence.refresh(peer.user_id, now)
        return out + self._flush_presence(now)

    def reap(self, node: str, now: float) -> list[Output]:
        """Another process died: its peers leave as if they disconnected here."""
        out: list[Output] = []
        for peer in [p for p in self.presence.peers.values() if p.node == node]:
            out += self.disconnect(peer.peer_id, now)
        return out

    def restore_bot_states(self, states: dict[str, bool]) -> None:
        """The stored enable states (at start); names of bots no longer configured are ignored."""
        for name, enabled in states.items():
            bot = self.bots.get(name)
            if bot is not None:
                bot.enabled = enabled

    def local_peers(self) -> list[Peer]:
        return [p for p in self.presence.peers.values() if p.node == self.config.node]
