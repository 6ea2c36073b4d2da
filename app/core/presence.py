"""Who is online: users, their peers (one per tab), grace and batching.

A user's life, as a transition table (state, input) → state:

    ABSENT  + peer joins         → PRESENT   (announce "joined")
    PRESENT + peer joins/leaves  → PRESENT   (while ≥ 1 peer remains)
    PRESENT + last peer leaves   → LEAVING   (deadline = now + grace)
    LEAVING + peer joins         → PRESENT   (a reload: no announcement)
    LEAVING + deadline passes    → ABSENT    (announce "left")

Several server processes share one table: each process applies the others'
changes *silently* (``announce=False``) and only the process that made a change
broadcasts it. So a grace deadline is kept only by the process that held the
user's last peer (``owned``); the others wait for its ``user-gone`` fact.

When no process owns the end (two tabs on two processes closed at once, or a
``user-gone`` lost in a broker outage), a *takeover* deadline fires ``margin``
seconds after grace on every process that saw the user emptied by another's
change: the process whose node id is the smallest among the user's last peers'
nodes announces the leave; the others wait ``2 × margin`` more before doing it
themselves, so a lost fact never leaves a ghost user.

Every change marks the user dirty; dirty users are flushed together at most
every ``batch`` seconds as one ``presence-diff`` and one system message, so a
crowd arriving at once costs the room a few events rather than one per pair.

Large rooms (over ``snapshot_max`` users, protocol §8) are held in part: the list
is in join order (:mod:`.joinorder`), each peer holds it up to some user (its
snapshot's first page, extended by the pages it fetched in order), ``held``
remembers where, and a diff tells a peer only of changes within what it holds,
its own entry and the counts. Newcomers sort last, so a crowd of N joining costs
each member O(its page), not O(N), and the batch stretches to ``large_batch`` so
the counts go out about twice a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

from .config import ChatConfig
from .errors import ClientError
from .facts import PeerCard
from .joinorder import JoinOrder

__all__ = ["Flush", "Peer", "Presence", "UserEntry", "summarize"]

_CARD_FIELDS = attrgetter(*(f.name for f in fields(PeerCard)))  # a tuple, in PeerCard's order


@dataclass(slots=True)
class Peer:
    """One connection (one tab). ``node`` names the process that holds it."""

    peer_id: str
    user_id: str
    user_name: str
    transport: str
    node: str = ""
    camera: bool = False
    mic: bool = False
    screen: bool = False
    ready: bool = False

    def fact(self) -> PeerCard:
        """This peer as other processes see it (a frozen snapshot: same fields, same order).

        Not ``astuple``: it deep-copies, which was ~2 % of a greeted connection.
        """
        return PeerCard(*_CARD_FIELDS(self))

    @classmethod
    def from_fact(cls, card: PeerCard) -> Peer:
        return cls(*_CARD_FIELDS(card))

    def wire(self) -> dict[str, Any]:
        return {
            "peerId": self.peer_id,
            "transport": self.transport,
            "media": {"camera": self.camera, "mic": self.mic, "screen": self.screen},
            "ready": self.ready,
        }


@dataclass(slots=True)
class UserEntry:
    user_id: str
    user_name: str
    peers: dict[str, Peer] = field(default_factory=dict)
    leaving_at: float | None = None
    nodes: set[str] = field(default_factory=set)  # processes of its current/last peers
    version: int = 0  # bumped whenever ``wire()`` may have changed (callers cache it)

    def wire(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "userName": self.user_name,
            "peers": [p.wire() for p in self.peers.values()],
        }


@dataclass(frozen=True, slots=True)
class Flush:
    """One batch of presence changes, ready to broadcast."""

    upsert: list[dict[str, Any]]
    remove: list[str]
    joined: list[str]
    left: list[str]
    #: the room's size (entries, users with a tab) when it is over ``snapshot_max``, else None
    counts: tuple[int, int] | None = None
    #: peers that held part of the list while the room was large: now small, they
    #: need the whole list again (a fresh ``presence``)
    resync: tuple[str, ...] = ()


def summarize(names: list[str], verb: str) -> str:
    """ "Ada joined", "Ada and Bob joined", "Ada, Bob and 12 others joined"."""
    if len(names) == 1:
        return f"{names[0]} {verb}"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} {verb}"
    if len(names) == 3:
        return f"{names[0]}, {names[1]} and {names[2]} {verb}"
    return f"{names[0]}, {names[1]} and {len(names) - 2} others {verb}"


class Presence:
    """The presence table. Pure state: the caller supplies ``now`` and flushes."""

    def __init__(
        self,
        grace: float,
        batch: float,
        node: str = "local",
        margin: float = 2.0,
        snapshot_max: int = 200,
        large_batch: float = 0.5,
        page_size: int = 50,
    ) -> None:
        self.grace = grace
        self.snapshot_max = snapshot_max
        #: a large room's pages (its snapshot's first one included): a sidebar's worth
        self.page_size = max(1, min(page_size, snapshot_max))
        self.batch = batch
        self.large_batch = max(batch, large_batch)
        self.node = node
        self.margin = margin
        self._takeover: dict[str, float] = {}  # user_id → when to end a grace nobody owns
        self.version = 0  # bumped on every change to the table
        #: bumped by every flush and every change no flush will carry (another
        #: process's, a silent drop): a snapshot taken since the last bump stays
        #: correct for a newcomer, because the next diff brings the rest
        self.generation = 0
        self.users: dict[str, UserEntry] = {}
        self.peers: dict[str, Peer] = {}
        self._dirty: set[str] = set()
        self._joined: list[str] = []
        self._left: list[str] = []
        self._flush_at: float | None = None
        self._leaving: dict[str, float] = {}  # user_id → deadline; keeps ``expire`` O(leaving)
        #: a large room's list order (pages, what a tab holds): join order
        self.order = JoinOrder()
        self.online = 0  # users with at least one peer
        self._counted = False  # the last flush carried the counts
        #: large rooms: peer_id → the key of the last user of the part of the list it
        #: holds; absent: the whole list (a small room, a client that paged to the
        #: end, the legacy wire). Only this process's peers are ever entered.
        self.held: dict[str, str] = {}

    @classmethod
    def from_config(cls, config: ChatConfig) -> Presence:
        return cls(
            config.presence_grace,
            config.presence_batch,
            config.node,
            snapshot_max=config.presence_snapshot_max,
            large_batch=config.presence_batch_large,
            page_size=config.presence_page,
        )

    def bump(self, user_id: str, *, silent: bool = True) -> None:
        """The user's entry changed: cached encodings of it are stale.

        ``silent``: no diff will announce it (the default for outside callers).
        """
        self.version += 1
        if silent:
            self.generation += 1
        user = self.users.get(user_id)
        if user is not None:
            user.version += 1

    def _mark(self, user_id: str, now: float) -> None:
        self._dirty.add(user_id)
        if self._flush_at is None:
            big = len(self.users) > self.snapshot_max
            self._flush_at = now + (self.large_batch if big else self.batch)

    def add(self, peer: Peer, now: float, *, announce: bool = True) -> None:
        user = self.users.get(peer.user_id)
        if user is None:
            user = self.users[peer.user_id] = UserEntry(peer.user_id, peer.user_name)
            self.order.add(peer.user_id)
            if announce:
                self._joined.append(peer.user_name)
        if not user.peers:
            user.nodes = set()
            self.online += 1
        user.nodes.add(peer.node)
        user.leaving_at = None
        self._leaving.pop(peer.user_id, None)
        self._takeover.pop(peer.user_id, None)
        user.user_name = peer.user_name
        user.peers[peer.peer_id] = peer
        self.peers[peer.peer_id] = peer
        self.bump(peer.user_id, silent=not announce)
        if announce:
            self._mark(peer.user_id, now)

    def remove(self, peer_id: str, now: float, *, owned: bool = True) -> Peer | None:
        """Remove a peer; ``owned=False`` for another process's change (no deadline, no diff)."""
        peer = self.peers.pop(peer_id, None)
        self.held.pop(peer_id, None)
        if peer is None:
            return None
        self.bump(peer.user_id, silent=not owned)
        user = self.users.get(peer.user_id)
        if user is not None:
            user.peers.pop(peer_id, None)
            if not user.peers:
                self.online -= 1
                user.leaving_at = now + self.grace
                if owned:
                    self._leaving[user.user_id] = user.leaving_at
                else:
                    self._takeover[user.user_id] = user.leaving_at + self.margin
            if owned:
                self._mark(peer.user_id, now)
        return peer

    def changed(self, peer_id: str, now: float) -> None:
        """A peer's media or ready flag changed."""
        peer = self.peers.get(peer_id)
        if peer is not None:
            self.bump(peer.user_id, silent=False)
            self._mark(peer.user_id, now)

    def refresh(self, user_id: str, now: float) -> None:
        """Send this user's entry again with the next diff (its clients missed a change)."""
        if user_id in self.users:
            self._mark(user_id, now)

    def rejoin(self, peer: Peer, now: float) -> None:
        """Others dropped this (live, local) peer: announce its user again."""
        if peer.user_name not in self._joined:
            self._joined.append(peer.user_name)
        self._mark(peer.user_id, now)

    def forget(self, user_id: str, now: float) -> None:
        """Drop an empty user whose end we missed: a ``remove`` diff, no "left" message."""
        user = self.users.get(user_id)
        if user is not None and not user.peers:
            self.gone(user_id)
            self._mark(user_id, now)

    def gone(self, user_id: str) -> None:
        """Another process ended this user's grace: drop it silently."""
        user = self.users.get(user_id)
        if user is not None and not user.peers:
            del self.users[user_id]
            self._unorder(user_id)
            self.version += 1
            self.generation += 1
            self._leaving.pop(user_id, None)
            self._takeover.pop(user_id, None)

    def expire(self, now: float) -> list[str]:
        """Users whose (owned) grace ran out leave; returns their ids."""
        gone: list[str] = []
        for user_id, deadline in list(self._leaving.items()):
            if deadline <= now:
                del self._leaving[user_id]
                gone.append(user_id)
        for user_id, deadline in list(self._takeover.items()):
            user = self.users.get(user_id)
            if user is None or user.peers:
                del self._takeover[user_id]
            elif deadline <= now and (
                self.node == min(user.nodes | {self.node}) or now >= deadline + 2 * self.margin
            ):
                del self._takeover[user_id]
                gone.append(user_id)
        for user_id in gone:
            self.version += 1
            user = self.users.pop(user_id)
            self._unorder(user_id)
            self._left.append(user.user_name)
            self._mark(user_id, now)
        return gone

    def next_deadline(self) -> float | None:
        deadlines = list(self._leaving.values()) + list(self._takeover.values())
        if self._flush_at is not None:
            deadlines.append(self._flush_at)
        return min(deadlines) if deadlines else None

    def flush(self, now: float) -> Flush | None:
        """The pending batch, when its time has come (``batch == 0``: at once)."""
        if self._flush_at is None or now < self._flush_at:
            return None
        # in list order (join order; the removed by their old keys): a tab's part is a prefix
        key = self.order.key_of
        dirty = sorted(self._dirty, key=lambda u: key(u) or "")
        upsert = [self.users[u].wire() for u in dirty if u in self.users]
        remove = [u for u in dirty if u not in self.users]
        self.order.flushed()
        # the counts ride along above the threshold, and once more on the way back down
        big = len(self.users) > self.snapshot_max
        counts = (len(self.users), self.online) if big or self._counted else None
        self._counted = big
        resync: tuple[str, ...] = ()
        if not big and self.held:
            resync, self.held = tuple(self.held), {}
        out = Flush(upsert, remove, self._joined, self._left, counts, resync)
        self.generation += 1
        self._dirty = set()
        self._joined = []
        self._left = []
        self._flush_at = None
        return out

    def peer_of(self, user_id: str, peer_id: str | None) -> Peer:
        """The sending peer of a POST: named, or the user's only one.

        Raises ``forbidden`` for another user's peer, ``not_found`` when none fits.
        """
        if peer_id is not None:
            peer = self.peers.get(peer_id)
            if peer is None:
                raise ClientError("not_found", "no open stream with that peerId")
            if peer.user_id != user_id:
                raise ClientError("forbidden", "that peer belongs to another user")
            return peer
        user = self.users.get(user_id)
        mine = list(user.peers.values()) if user else []
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise ClientError("not_found", "open /api/chat-stream first")
        raise ClientError("invalid", "several tabs are open: send X-Lastra-Peer")

    def hold(self, peer_id: str, upto: str | None) -> None:
        """``peer_id`` was sent the list up to key ``upto`` (a snapshot's cursor; None: all)."""
        if upto is None:
            self.held.pop(peer_id, None)
        else:
            self.held[peer_id] = upto

    def paged(self, peer_id: str, after: str | None, upto: str | None) -> None:
        """A page ``(after, upto]`` reached ``peer_id``: extend what it holds if contiguous.

        A page that leaves a gap (a cursor beyond what the peer holds) is answered
        but not kept up to date: the diffs could not say what lies in the gap.
        """
        held = self.held.get(peer_id)
        if held is None or (after is not None and after > held):
            return
        if upto is None:
            del self.held[peer_id]
        elif upto > held:
            self.held[peer_id] = upto

    def snapshot(self) -> list[dict[str, Any]]:
        return [u.wire() for u in self.users.values()]

    def _unorder(self, user_id: str) -> None:
        self.order.remove(user_id)

    def snapshot_data(self) -> dict[str, Any]:
        """A newcomer's ``presence``: everyone, or in a large room the first page and the counts."""
        if len(self.users) <= self.snapshot_max:
            return {"users": self.snapshot()}
        return self.page(None)

    def page(self, after: str | None, limit: int | None = None) -> dict[str, Any]:
        """Up to ``limit`` users after ``after`` (in join order), the counts, the next cursor.

        A cursor (a page's last key) stays valid whoever joins or leaves meanwhile.
        """
        limit = self.page_size if limit is None else limit
        ids, cursor = self.order.after(after, limit)
        return {
            "users": [self.users[u].wire() for u in ids],
            "total": len(self.users),
            "online": self.online,
            "cursor": cursor,
        }
