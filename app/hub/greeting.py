"""What a connection receives first: ``ready``, a replay or the history, the snapshots.

Built from the store and the core; the two parts every newcomer shares are cached:
the ``history`` frame (per epoch and last seq) and the ``presence`` snapshot (per
presence generation), so a crowd reconnecting after a restart costs one read and
one encode, not one per client. Above ``snapshot_max`` users the snapshot is the
first page of the list (protocol §8), so a join costs O(page), not O(room).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from app.backends.base import Record, Store
from app.core import Chat, Peer
from app.core.config import LEGACY_TRANSPORT
from app.wire import Frame, compact, encode_event, frame_from_record, history_frame

__all__ = ["Greeting"]


class _PresenceBase:
    """A shared presence snapshot and the user versions it holds."""

    __slots__ = ("frame", "generation", "versions")

    def __init__(self, generation: int, frame: Frame, versions: dict[str, int]) -> None:
        self.generation = generation
        self.frame = frame
        self.versions = versions


class _PartialBase:
    """A large room's shared first page (§8): the frame's head, its users' versions, the cursor."""

    __slots__ = ("cursor", "generation", "head", "versions")

    def __init__(
        self, generation: int, head: bytes, versions: dict[str, int], cursor: str | None
    ) -> None:
        self.generation = generation
        self.head = head
        self.versions = versions
        self.cursor = cursor


class Greeting:
    """Builds greetings; holds the shared history and presence snapshots."""

    def __init__(self, core: Chat, store: Store, ice_servers: Callable[[str], list[Any]]) -> None:
        self.core = core
        self.store = store
        self.ice_servers = ice_servers
        self._history_cache: tuple[tuple[str, int], Frame, int | None] | None = None
        self._presence_base: _PresenceBase | None = None
        self._partial_base: _PartialBase | None = None
        self._user_json: dict[str, tuple[int, bytes]] = {}
        self._bot_state: tuple[tuple[tuple[str, str, str, bool], ...], Frame] | None = None

    async def read(
        self, last_seq: int | None, epoch: str | None
    ) -> tuple[int, list[Record] | None, tuple[Frame, int | None] | None]:
        """The store's part: its last seq, and a replay after ``last_seq`` or the history.

        Raises whatever the store raises (the caller refuses the connection, 1013).
        """
        store = self.store
        replay = None
        if last_seq is not None and epoch == store.epoch:
            replay = await store.since(last_seq)
        current = await store.last_seq()
        history = await self._history(current) if replay is None else None
        return current, replay, history

    def frames(
        self,
        peer: Peer,
        current: int,
        replay: list[Record] | None,
        history: tuple[Frame, int | None] | None,
    ) -> tuple[list[Frame], int | None]:
        """The greeting's frames, and the newest seq the history holds (if it was sent)."""
        epoch = self.store.epoch
        ready = self.core.ready_event(
            peer,
            epoch=epoch,
            last_seq=current,
            recovered=replay is not None,
            ice_servers=self.ice_servers(peer.user_id),
        )
        frames = [encode_event(ready)]
        newest = None
        if replay is not None:
            frames += [frame_from_record(r.type, r.seq, r.data, epoch) for r in replay]
        elif history is not None:
            frame, newest = history
            frames.append(frame)
        frames += [self.presence(peer), self.bot_state()]
        return frames, newest

    def bot_state(self) -> Frame:
        """The ``bot-state`` frame, encoded again only when a bot changed."""
        key = tuple(
            (b.name, b.display_name, b.personality, b.enabled) for b in self.core.bots.values()
        )
        cached = self._bot_state
        if cached is None or cached[0] != key:
            cached = self._bot_state = (key, encode_event(self.core.bot_state_event()))
        return cached[1]

    async def _history(self, current: int) -> tuple[Frame, int | None]:
        """The ``history`` frame, built once per (epoch, last seq) and shared."""
        key = (self.store.epoch, current)
        cached = self._history_cache
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        recent = await self.store.recent(self.core.config.history_limit)
        frame = history_frame([r.data for r in recent if r.type == "chat"])
        newest = recent[-1].seq if recent else None
        self._history_cache = (key, frame, newest)
        return frame, newest

    def presence(self, peer: Peer) -> Frame:
        """The ``presence`` snapshot for a newcomer, shared within a presence batch.

        A snapshot taken since the last flush (and since the last change no diff
        will carry) is still right for a newcomer: every later change is pending
        and reaches it with the next ``presence-diff``. So a crowd arriving within
        one batch shares one snapshot (O(users) once, not per join); only the
        newcomer's own entry is spliced in, so it sees itself at once.
        """
        presence, user_id = self.core.presence, peer.user_id
        if len(presence.users) > presence.snapshot_max:
            frame, cursor = self._partial(user_id)
            if peer.transport != LEGACY_TRANSPORT:  # (the old client lists all, as before)
                presence.hold(peer.peer_id, cursor)
            return frame
        base = self._presence_base
        if base is None or base.generation != presence.generation:
            base = self._build_presence()
        user = presence.users.get(user_id)
        if user is None or base.versions.get(user_id) == user.version:
            return base.frame
        if user_id in base.versions:  # another tab changed it: rebuild (rare)
            return self._build_presence().frame
        parts = (
            memoryview(base.frame.json)[:-3],  # without the closing ]}}
            b"," if base.versions else b"",
            self._user_fragment(user_id),
            b"]}}",
        )
        return Frame("presence", b"".join(parts), None, None)

    def _user_fragment(self, user_id: str) -> bytes:
        user = self.core.presence.users[user_id]
        cached = self._user_json.get(user_id)
        if cached is None or cached[0] != user.version:
            cached = self._user_json[user_id] = (user.version, compact(orjson.dumps(user.wire())))
        return cached[1]

    def _prune(self) -> None:
        """Forget the fragments of users long gone (bounded against churn)."""
        users = self.core.presence.users
        if len(self._user_json) > 2 * len(users) + 64:
            kept = self._user_json
            self._user_json = {u: kept[u] for u in users if u in kept}

    def _build_presence(self) -> _PresenceBase:
        presence = self.core.presence
        parts = [self._user_fragment(user_id) for user_id in presence.users]
        self._prune()
        body = b'{"type":"presence","data":{"users":[' + b",".join(parts) + b"]}}"
        versions = {u: entry.version for u, entry in presence.users.items()}
        base = _PresenceBase(presence.generation, Frame("presence", body, None, None), versions)
        self._presence_base = base
        return base

    def _partial(self, user_id: str) -> tuple[Frame, str | None]:
        """A large room's snapshot: the first page (shared, as above), the newcomer, the counts.

        The counts are today's (not the shared page's): the next diff carries them too.
        """
        presence = self.core.presence
        base = self._partial_base
        user = presence.users.get(user_id)
        if (
            base is None
            or base.generation != presence.generation
            or (user is not None and base.versions.get(user_id, user.version) != user.version)
        ):
            self._prune()
            ids, cursor = presence.order.after(None, presence.page_size)
            head = b'{"type":"presence","data":{"users":[' + b",".join(
                self._user_fragment(u) for u in ids
            )
            versions = {u: presence.users[u].version for u in ids}
            base = self._partial_base = _PartialBase(presence.generation, head, versions, cursor)
        own = b""
        if user is not None and user_id not in base.versions:
            own = (b"," if base.versions else b"") + self._user_fragment(user_id)
        counts = b'],"total":%d,"online":%d,"cursor":' % (len(presence.users), presence.online)
        body = b"".join((base.head, own, counts, orjson.dumps(base.cursor), b"}}"))
        return Frame("presence", body, None, None), base.cursor
