"""The chat core: one room, driven by parsed messages and the clock.

Sans-I/O: :class:`Chat` takes inputs — a peer connected or left, a parsed client
message, the time passing, a durable event committed — and returns ``Output``
lists (see :mod:`app.core.outputs`). It never awaits, never touches a socket,
a database or the wall clock on its own (``clock`` is injected). That is what
lets one core serve the WebSocket and the SSE+POST adapters alike.

After each call the caller must carry out the returned outputs in order, and
must call :meth:`Chat.tick` no later than :meth:`Chat.next_deadline`.

Several processes, one chat: see :mod:`app.core.replica` (``Chat.apply``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import roomlist
from .close import CloseCode
from .config import LEGACY_TRANSPORT, Bot, ChatConfig, Identity
from .errors import ClientError
from .events import ack, new_id, typing_event
from .facts import BotToggled, PeerDown, PeerUp, PeerUpdate, TypingChanged, UserGone
from .messages import (
    AiRequest,
    Auth,
    BotToggle,
    Clear,
    ClientMessage,
    MediaState,
    Ping,
    PresencePage,
    Ready,
    Signal,
    Typing,
)
from .messages import Chat as ChatMessage
from .outputs import (
    Append,
    AskBot,
    Broadcast,
    Close,
    Draft,
    Event,
    Output,
    Publish,
    Reply,
    SaveBotState,
    Send,
    Tally,
)
from .presence import Peer, Presence, summarize
from .ratelimit import Budgets
from .replica import Replica
from .reports import CallOutcome, DeliveryReport, cohort_of, pair_of

__all__ = ["LEGACY_TRANSPORT", "Bot", "Chat", "ChatConfig", "Identity"]


class Chat(Replica):
    """One chat room's live state: presence, typing, bots, rate limits, heartbeats."""

    def __init__(
        self,
        config: ChatConfig,
        bots: list[Bot] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.presence = Presence.from_config(config)
        self.bots: dict[str, Bot] = {b.name: b for b in bots or []}
        self._clock = clock
        # user_id → (name, expires_at, owned); only the owner broadcasts the expiry
        self._typing: dict[str, tuple[str, float, bool]] = {}
        self._budgets = Budgets(
            {"chat": config.rate_chat, "signal": config.rate_signal, "report": config.rate_report},
            config.rate_other,
        )
        self._seen: dict[str, float] = {}  # WebSocket peers → last frame time, oldest first
        self._next_heartbeat_scan = 0.0

    # ------------------------------------------------------------ connections

    def connect(self, peer: Peer, now: float) -> list[Output]:
        """A connection authenticated. Send it :meth:`ready_event` and the snapshots next."""
        peer.node = self.config.node
        self.presence.add(peer, now)
        if peer.transport == "ws":
            self._seen[peer.peer_id] = now
        return [Publish(PeerUp(peer.fact())), *self._flush_presence(now)]

    def disconnect(self, peer_id: str, now: float) -> list[Output]:
        self._seen.pop(peer_id, None)
        peer = self.presence.remove(peer_id, now)
        if peer is None:
            return []
        return [Publish(PeerDown(peer_id, peer.user_id)), *self._flush_presence(now)]

    def ready_event(
        self, peer: Peer, *, epoch: str, last_seq: int, recovered: bool, ice_servers: list[Any]
    ) -> Event:
        return Event(
            "ready",
            {
                "userId": peer.user_id,
                "userName": peer.user_name,
                "peerId": peer.peer_id,
                "transport": peer.transport,
                "epoch": epoch,
                "lastSeq": last_seq,
                "recovered": recovered,
                "heartbeatInterval": self.config.heartbeat_interval,
                "iceServers": ice_servers,
                "limits": self.config.limits(),
            },
        )

    def snapshot_events(self) -> list[Event]:
        """``presence`` and ``bot-state`` for a peer that just connected."""
        return [
            Event("presence", self.presence.snapshot_data()),
            self.bot_state_event(),
        ]

    def bot_state_event(self) -> Event:
        return Event("bot-state", {"bots": [b.wire() for b in self.bots.values()]})

    def peer_of(self, user_id: str, peer_id: str | None) -> Peer:
        """The sending peer of a POST (see :meth:`Presence.peer_of`)."""
        return self.presence.peer_of(user_id, peer_id)

    # --------------------------------------------------------------- messages

    def touch(self, peer_id: str, now: float) -> None:
        """Any frame from a WebSocket peer proves it alive."""
        seen = self._seen
        if peer_id in seen:  # to the end: the map stays in order of last frame
            del seen[peer_id]
            seen[peer_id] = now

    def receive(
        self, user: Identity, peer_id: str | None, msg: ClientMessage, now: float
    ) -> list[Output]:
        """Handle one parsed message from ``user`` (on ``peer_id``, if it has one).

        Raises :class:`ClientError` for the client's mistakes; the caller turns
        it into an ``error`` event or HTTP error body.
        """
        if isinstance(msg, Ping):
            self._limit(user, "other", now, msg.ref)
            pong: dict[str, Any] = {"t": msg.t}
            if msg.ref is not None:
                pong["ref"] = msg.ref
            return [Reply(Event("pong", pong))]
        if isinstance(msg, ChatMessage):
            self._limit(user, "chat", now, msg.ref)
            return self._chat(user, msg, now)
        if isinstance(msg, Signal):
            self._limit(user, "signal", now, msg.ref)
            return self._signal(user, peer_id, msg)
        if isinstance(msg, CallOutcome | DeliveryReport):
            self._limit(user, "report", now, msg.ref)
            return self._tally(user, peer_id, msg)
        self._limit(user, "other", now, msg.ref)
        if isinstance(msg, PresencePage):  # a large room's list, a page at a time (§8)
            return roomlist.page_reply(self.presence, user.user_id, peer_id, msg.cursor, msg.ref)
        if isinstance(msg, Typing):
            out = self._set_typing(user, msg.is_typing, now)
            return out + self._ok(msg.ref)
        if isinstance(msg, MediaState):
            peer = self._own_peer(user, peer_id, msg.ref)
            for name in ("camera", "mic", "screen"):
                value = getattr(msg, name)
                if value is not None:
                    setattr(peer, name, value)
            return self._peer_changed(peer, now) + self._ok(msg.ref)
        if isinstance(msg, Ready):
            peer = self._own_peer(user, peer_id, msg.ref)
            if peer.ready:
                return self._ok(msg.ref)
            peer.ready = True
            return self._peer_changed(peer, now) + self._ok(msg.ref)
        if isinstance(msg, BotToggle | Clear):
            self._moderator(user.user_id, msg.ref)
        if isinstance(msg, BotToggle):
            bot = self.bots.get(msg.bot)
            if bot is None:
                raise ClientError("not_found", f"no bot named {msg.bot!r}", msg.ref)
            bot.enabled = msg.enabled
            return [
                SaveBotState(bot.name, bot.enabled),
                Publish(BotToggled(bot.name, bot.enabled)),
                Broadcast(self.bot_state_event()),
                *self._ok(msg.ref),
            ]
        if isinstance(msg, Clear):
            by = {"userId": user.user_id, "userName": user.user_name}
            data = {"id": new_id(), "ts": self._ts(), "by": by}
            return [Append(Draft("clear", data, user.user_id, None, msg.ref))]
        if isinstance(msg, AiRequest):
            return [self._ask(user, msg)]
        if isinstance(msg, Auth):
            raise ClientError("invalid", "already authenticated", msg.ref)
        raise ClientError("unknown_type", "unsupported message", None)  # pragma: no cover

    def committed(self, draft: Draft, seq: int, first_id: str | None = None) -> list[Output]:
        """``draft`` is durable with ``seq``; ``first_id`` is set when it was a duplicate.

        A duplicate (same user, same clientId) is acked with the first copy's
        ``id``/``seq`` and not broadcast again.
        """
        out: list[Output] = []
        duplicate = first_id is not None
        if not duplicate:
            out.append(Broadcast(draft.event(seq)))
        if draft.type == "chat" and draft.user_id is not None:
            out.append(ack(draft.ref, clientId=draft.client_id, id=first_id or draft.id, seq=seq))
        elif draft.ref is not None:
            out.append(ack(draft.ref, seq=seq))
        return out

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> list[Output]:
        """Expire typing, presence grace and heartbeats; flush presence batches."""
        out: list[Output] = []
        for user_id, (name, expires, owned) in list(self._typing.items()):
            if expires <= now:
                del self._typing[user_id]
                if owned:
                    out.append(Broadcast(typing_event(user_id, name, False)))
        for user_id in self.presence.expire(now):
            out.append(Publish(UserGone(user_id)))
        out += self._flush_presence(now)
        if now >= self._next_heartbeat_scan:
            self._next_heartbeat_scan = now + min(1.0, self.config.heartbeat_timeout / 4)
            limit = now - self.config.heartbeat_timeout
            quiet = []  # the oldest first: stop at the first peer heard from in time
            for peer_id, seen in self._seen.items():
                if seen >= limit:
                    break
                quiet.append(peer_id)
            for peer_id in quiet:
                del self._seen[peer_id]
                out.append(Close(peer_id, CloseCode.HEARTBEAT, "heartbeat-timeout"))
        return out

    def next_deadline(self) -> float | None:
        deadlines = [exp for _, exp, _ in self._typing.values()]
        presence = self.presence.next_deadline()
        if presence is not None:
            deadlines.append(presence)
        if self._seen:
            deadlines.append(self._next_heartbeat_scan)
        return min(deadlines) if deadlines else None

    # -------------------------------------------------------------- internals

    def _ts(self) -> int:
        return int(self._clock() * 1000)

    def charge(self, user: Identity, kind: str, now: float) -> None:
        """Take one ``kind`` message from ``user``'s rate budget; raises ``rate_limited``.

        For messages an adapter carries past :meth:`receive` (the legacy wire's signals).
        """
        self._limit(user, kind, now, None)

    def _moderator(self, user_id: str, ref: str | None) -> None:
        """Clear and bot toggles: anyone, unless ``LASTRA_MODERATORS`` names who may."""
        moderators = self.config.moderators
        if moderators and user_id not in moderators:
            raise ClientError("forbidden", "only moderators may clear the chat or toggle bots", ref)

    def _ok(self, ref: str | None) -> list[Output]:
        return [ack(ref)] if ref is not None else []

    def _limit(self, user: Identity, kind: str, now: float, ref: str | None) -> None:
        if not self._budgets.take(user.user_id, kind, now):
            raise ClientError("rate_limited", f"too many {kind} messages; slow down", ref)

    def _own_peer(self, user: Identity, peer_id: str | None, ref: str | None) -> Peer:
        try:
            return self.peer_of(user.user_id, peer_id)
        except ClientError as exc:
            exc.ref = ref
            raise

    def _chat(self, user: Identity, msg: ChatMessage, now: float) -> list[Output]:
        out = self._set_typing(user, False, now)
        data = {
            "id": new_id(),
            "ts": self._ts(),
            "kind": "user",
            "userId": user.user_id,
            "userName": user.user_name,
            "text": msg.text,
        }
        if msg.client_id is not None:
            data["clientId"] = msg.client_id
        out.append(Append(Draft("chat", data, user.user_id, msg.client_id, msg.ref)))
        return out

    def _ask(self, user: Identity, msg: AiRequest) -> AskBot:
        if msg.bot is not None:
            bot = self.bots.get(msg.bot)
            if bot is None:
                raise ClientError("not_found", f"no bot named {msg.bot!r}", msg.ref)
        else:
            bot = next((b for b in self.bots.values() if b.enabled), None)
        if not self.config.ai_available:
            raise ClientError("ai_unavailable", "no AI provider is configured", msg.ref)
        if bot is None or not bot.enabled:
            raise ClientError("ai_unavailable", "that bot is disabled", msg.ref)
        return AskBot(bot.name, msg.prompt, user.user_id, user.user_name, msg.ref)

    def _signal(self, user: Identity, peer_id: str | None, msg: Signal) -> list[Output]:
        sender = self._own_peer(user, peer_id, msg.ref)
        target = self.presence.peers.get(msg.to)
        if target is None:
            raise ClientError("not_found", "no peer with that peerId is connected", msg.ref)
        if target.transport == LEGACY_TRANSPORT:  # an old tab could not read it: say so
            raise ClientError("not_found", "that peer is an SSE-era tab: no calls", msg.ref)
        event = Event(
            "webrtc-signal",
            {
                "from": sender.peer_id,
                "fromUser": {"userId": user.user_id, "userName": user.user_name},
                "signal": msg.signal,
                "stream": msg.stream,
            },
        )
        return [Send(target.peer_id, event), *self._ok(msg.ref)]

    def _tally(
        self, user: Identity, peer_id: str | None, msg: CallOutcome | DeliveryReport
    ) -> list[Output]:
        """A report counts for the reporter's transport; a call's, for both ends' pair."""
        mine = self._own_peer(user, peer_id, msg.ref)
        pair = None
        if isinstance(msg, CallOutcome):
            remote = self.presence.peers.get(msg.peer)
            theirs = remote.transport if remote is not None else msg.remote_transport
            if theirs is None:
                raise ClientError("not_found", "that peer is gone: send remoteTransport", msg.ref)
            pair = pair_of(mine.transport, theirs)
        return [Tally(msg, cohort_of(mine.transport), pair), *self._ok(msg.ref)]

    def _set_typing(self, user: Identity, typing: bool, now: float) -> list[Output]:
        was = user.user_id in self._typing
        if typing:
            expires = now + self.config.typing_timeout
            self._typing[user.user_id] = (user.user_name, expires, True)
        else:
            self._typing.pop(user.user_id, None)
        if was == typing and not typing:
            return []
        # A renewal is published too: the process that saw the newest keystroke owns
        # the expiry, so a renewal on another process does not clear typing early.
        fact = TypingChanged(user.user_id, user.user_name, typing)
        if was == typing:
            return [Publish(fact)]
        return [Publish(fact), Broadcast(typing_event(user.user_id, user.user_name, typing))]

    def _peer_changed(self, peer: Peer, now: float) -> list[Output]:
        self.presence.changed(peer.peer_id, now)
        return [Publish(PeerUpdate(peer.fact())), *self._flush_presence(now)]

    def _flush_presence(self, now: float) -> list[Output]:
        flush = self.presence.flush(now)
        if flush is None:
            return []
        out = roomlist.diff_outputs(self.presence, flush)
        for names, verb in ((flush.joined, "joined"), (flush.left, "left")):
            if names:
                out.append(Append(Draft("chat", self._system(summarize(names, verb)))))
        return out

    def resync_held(self) -> list[Output]:
        """Whole lists for partial holders if the room is small (after another's diff)."""
        return roomlist.resync(self.presence)

    def _system(self, text: str) -> dict[str, Any]:
        return {
            "id": new_id(),
            "ts": self._ts(),
            "kind": "system",
            "userId": None,
            "userName": None,
            "text": text,
        }
