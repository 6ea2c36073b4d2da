"""A test rig for the sans-I/O chat core, in the spirit of h11's ``ConnectionPair``.

``CorePair`` wires any number of fake peers to one :class:`app.core.Chat` and
plays the I/O layer's part: it carries out every ``Output`` the core returns,
in order, exactly as ``app/hub.py`` does —

- ``Broadcast`` lands in the inbox of every connected peer (and in ``broadcasts``);
- ``Send`` lands in one peer's inbox;
- ``Reply`` answers the request being handled: it is returned by ``send``/``post``,
  and a WebSocket peer also finds it in its inbox;
- ``Append`` drafts are committed at once with strictly increasing seqs; a
  repeated ``(userId, clientId)`` is answered with the first copy's ``id``/``seq``
  like the real stores do; then ``Chat.committed`` runs and its outputs are carried out;
- ``Close`` marks the peer closed and disconnects it, as the transport would;
- ``SaveBotState`` is remembered in ``saved_bots``; ``AskBot`` in ``asks``;
- ``Publish`` facts are kept in ``published`` and fed to every *other* node's
  ``Chat.apply`` — with ``nodes=2`` the rig is a small cluster: several cores
  (processes) that share one store, one fan-out and one clock.

Time is a :class:`FakeClock`; nothing sleeps. ``advance`` moves the clock and
ticks every core. No network, no asyncio.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.core import (
    Append,
    AskBot,
    Bot,
    Broadcast,
    Chat,
    ChatConfig,
    ClientError,
    Close,
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
    parse_data,
)
from app.core.facts import Fact, fact_from_wire, fact_to_wire

__all__ = ["CorePair", "FakeClock", "FakePeer", "default_bots"]

START = 1_000.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def default_bots() -> list[Bot]:
    return [
        Bot("sol", "Sol", "sunny"),
        Bot("pip", "Pip", "curious"),
        Bot("noor", "Noor", "calm", enabled=False),
    ]


@dataclass
class FakePeer:
    """One tab: a connection of one user to one node, and everything it received."""

    pair: CorePair
    peer: Peer
    identity: Identity
    node: int = 0
    inbox: list[Event] = field(default_factory=list)
    closed: tuple[int, str] | None = None
    connected: bool = True

    @property
    def peer_id(self) -> str:
        return self.peer.peer_id

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    def send(self, obj: object) -> list[Event]:
        """One decoded frame from this peer; returns the replies (``ack``/``error``/``pong``)."""
        return self.pair.send(self, obj)

    def post(self, kind: str, data: dict[str, Any], **kw: Any) -> list[Event]:
        """A POST from this peer's user, naming this peer (``X-Lastra-Peer``)."""
        kw.setdefault("node", self.node)
        return self.pair.post(self.identity, kind, data, peer_id=self.peer_id, **kw)

    def events(self, type_: str) -> list[Event]:
        return [e for e in self.inbox if e.type == type_]

    def take(self) -> list[Event]:
        """Everything received so far; empties the inbox."""
        out, self.inbox = self.inbox, []
        return out


class CorePair:
    """``nodes`` chat cores, N fake peers, a store that commits drafts, and a fake clock."""

    def __init__(
        self,
        config: ChatConfig | None = None,
        bots: list[Bot] | None = None,
        *,
        nodes: int = 1,
        start: float = START,
    ) -> None:
        self.clock = FakeClock(start)
        self.config = config or ChatConfig(presence_batch=0.0, presence_grace=5.0)
        configs = (
            [self.config]
            if nodes == 1
            else [dataclasses.replace(self.config, node=f"n{i}") for i in range(nodes)]
        )
        self.chats = [
            Chat(
                c,
                default_bots() if bots is None else [dataclasses.replace(b) for b in bots],
                clock=self.clock,
            )
            for c in configs
        ]
        self.peers: dict[str, FakePeer] = {}
        self.seq = 0
        self.history: list[Event] = []  # committed durable events, in seq order
        self.broadcasts: list[Event] = []
        self.sends: list[Send] = []
        self.closes: list[Close] = []
        self.published: list[dict[str, Any]] = []
        self.asks: list[AskBot] = []
        self.tallies: list[Tally] = []  # validated client reports, as the hub counts them
        self.saved_bots: dict[str, bool] = {}
        self.drafts: list[Draft] = []
        self._keys: dict[tuple[str, str], tuple[str, int]] = {}
        self._ids = itertools.count(1)
        #: hold published facts (a slow broker) until :meth:`deliver_facts`
        self.hold_facts = False
        self._held: list[tuple[int, dict[str, Any]]] = []

    @property
    def chat(self) -> Chat:
        """The first (or only) node's core."""
        return self.chats[0]

    @property
    def now(self) -> float:
        return self.clock.now

    # ---------------------------------------------------------------- peers

    def identity(self, user_name: str, user_id: str | None = None) -> Identity:
        return Identity(user_id or f"u-{user_name.lower()}", user_name)

    def connect(
        self,
        user_name: str,
        *,
        user_id: str | None = None,
        transport: str = "ws",
        peer_id: str | None = None,
        node: int = 0,
    ) -> FakePeer:
        """Open a tab for ``user_name``; the peer is registered before the core hears of it."""
        ident = self.identity(user_name, user_id)
        pid = peer_id or f"p{next(self._ids)}"
        peer = Peer(pid, ident.user_id, ident.user_name, transport)
        fake = FakePeer(self, peer, ident, node)
        self.peers[pid] = fake
        self.carry_out(self.chats[node].connect(peer, self.now), fake, node)
        return fake

    def disconnect(self, fake: FakePeer) -> None:
        """The transport lost this tab."""
        if not fake.connected:
            return
        fake.connected = False
        self.peers.pop(fake.peer_id, None)
        self.carry_out(self.chats[fake.node].disconnect(fake.peer_id, self.now), None, fake.node)

    # ------------------------------------------------------------- messages

    def send(self, fake: FakePeer, obj: object) -> list[Event]:
        """One decoded WebSocket frame from ``fake``, handled like the hub handles it."""
        chat = self.chats[fake.node]
        chat.touch(fake.peer_id, self.now)
        try:
            msg = parse(obj)
            outputs = chat.receive(fake.identity, fake.peer_id, msg, self.now)
            return self.carry_out(outputs, fake, fake.node)
        except ClientError as exc:
            err = Event("error", exc.data())
            fake.inbox.append(err)
            return [err]

    def post(
        self,
        identity: Identity,
        kind: str,
        data: dict[str, Any],
        *,
        ref: str | None = None,
        peer_id: str | None = None,
        node: int = 0,
    ) -> list[Event]:
        """A POST endpoint on ``node``: the body's data, optional ``ref`` and ``X-Lastra-Peer``."""
        try:
            msg = parse_data(kind, data, ref)
            outputs = self.chats[node].receive(identity, peer_id, msg, self.now)
            return self.carry_out(outputs, None, node)
        except ClientError as exc:
            return [Event("error", exc.data())]

    # ----------------------------------------------------------------- time

    def advance(self, seconds: float) -> list[Output]:
        """Move the clock by ``seconds`` and tick every node; returns the ticks' outputs."""
        self.clock.now += seconds
        return self.tick()

    def tick(self) -> list[Output]:
        out: list[Output] = []
        for node, chat in enumerate(self.chats):
            outputs = chat.tick(self.now)
            self.carry_out(outputs, None, node)
            out += outputs
        return out

    def run_for(self, seconds: float, step: float = 0.1) -> list[Output]:
        """Tick every ``step`` seconds for ``seconds``; returns all the outputs."""
        out: list[Output] = []
        end = self.now + seconds
        while self.now + step <= end + 1e-9:
            out += self.advance(step)
        return out

    # ------------------------------------------------------------ the I/O part

    def carry_out(
        self, outputs: list[Output], origin: FakePeer | None, node: int = 0
    ) -> list[Event]:
        """Do what ``node``'s outputs say, in order; returns the replies to ``origin``."""
        replies: list[Event] = []
        for out in outputs:
            if isinstance(out, Broadcast):
                self.broadcasts.append(out.event)
                for fake in list(self.peers.values()):
                    fake.inbox.append(out.event)
            elif isinstance(out, Send):
                self.sends.append(out)
                target = self.peers.get(out.peer_id)
                if target is not None:
                    target.inbox.append(out.event)
            elif isinstance(out, Reply):
                replies.append(out.event)
                if origin is not None:
                    origin.inbox.append(out.event)
            elif isinstance(out, Append):
                replies += self.carry_out(self._commit(out.draft, node), origin, node)
            elif isinstance(out, Close):
                self.closes.append(out)
                target = self.peers.get(out.peer_id)
                if target is not None:
                    target.closed = (out.code, out.reason)
                    self.disconnect(target)
            elif isinstance(out, SaveBotState):
                self.saved_bots[out.name] = out.enabled
            elif isinstance(out, AskBot):
                self.asks.append(out)
            elif isinstance(out, Tally):
                self.tallies.append(out)
            elif isinstance(out, Publish):
                self.published.append(out.fact)
                if self.hold_facts:
                    self._held.append((node, out.fact))
                else:
                    self._apply(node, out.fact)
            else:  # pragma: no cover - a new Output kind the rig does not know
                raise AssertionError(f"unknown output {out!r}")
        return replies

    def deliver_facts(self) -> None:
        """The broker catches up: every held fact reaches the other nodes, in order."""
        held, self._held = self._held, []
        for node, fact in held:
            self._apply(node, fact)

    def drop_facts(self) -> None:
        """The link to the broker was lost: held facts never arrive."""
        self._held.clear()

    def _apply(self, node: int, fact: Fact) -> None:
        """As the Redis broker carries it: through the JSON wire and back."""
        carried = fact_from_wire(orjson.loads(orjson.dumps(fact_to_wire(fact))))
        assert carried == fact
        for other, chat in enumerate(self.chats):
            if other != node:
                chat.apply(carried, self.now)

    def _commit(self, draft: Draft, node: int) -> list[Output]:
        self.drafts.append(draft)
        chat = self.chats[node]
        key = (draft.user_id, draft.client_id) if draft.user_id and draft.client_id else None
        if key is not None and key in self._keys:
            first_id, first_seq = self._keys[key]
            return chat.committed(draft, first_seq, first_id)
        self.seq += 1
        if key is not None:
            self._keys[key] = (draft.id, self.seq)
        self.history.append(draft.event(self.seq))
        return chat.committed(draft, self.seq)

    # ------------------------------------------------------------- look-ups

    def system_texts(self) -> list[str]:
        return [
            e.data["text"]
            for e in self.history
            if e.type == "chat" and e.data.get("kind") == "system"
        ]

    def broadcast_types(self) -> list[str]:
        return [e.type for e in self.broadcasts]

    def diffs(self) -> list[dict[str, Any]]:
        return [e.data for e in self.broadcasts if e.type == "presence-diff"]

    def users_present(self, node: int = 0) -> dict[str, list[str]]:
        """userId → peerIds, from one node's own snapshot."""
        snapshot = self.chats[node].presence.snapshot()
        return {u["userId"]: [p["peerId"] for p in u["peers"]] for u in snapshot}

    def reset_logs(self) -> None:
        self.broadcasts.clear()
        self.sends.clear()
        self.closes.clear()
        self.published.clear()
        for fake in self.peers.values():
            fake.inbox.clear()
