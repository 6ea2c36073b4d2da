"""The SSE-era tab's view of today's events: translation to the old wire (``LEGACY_WIRE.md``).

Per connection, as frames leave the queue: the shared frames the hub queues for
everyone are turned into the old events for this tab only (:class:`LegacyView`).
"""

from __future__ import annotations

import time
from typing import Any

from app.hub import Hub
from app.wire import Frame, decode

__all__ = ["LEGACY_SIGNAL", "LegacyView", "bots_data"]

#: an internal event: one legacy tab's signal, verbatim, for one other legacy tab
LEGACY_SIGNAL = "legacy-signal"
#: events a legacy tab has no name for (it resyncs from the greeting, not by seq)
_UNSPOKEN = frozenset({"ready", "ack", "error", "pong", "webrtc-signal"})


def _message(data: dict[str, Any]) -> dict[str, Any]:
    """A ``chat`` data object as the old ``Msg``."""
    kind = data.get("kind")
    user_id: Any
    name: Any
    if kind == "system":
        user_id, name, type_ = "system", "System", "system"
    elif kind == "bot":
        user_id, name, type_ = "ai", data.get("userName"), "ai"
    else:
        user_id, name, type_ = data.get("userId"), data.get("userName"), "user"
    return {
        "id": data.get("id"),
        "userId": user_id,
        "userName": name,
        "content": data.get("text", ""),
        "timestamp": data.get("ts"),
        "type": type_,
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


class LegacyView:
    """One legacy tab's view of the room: each shared frame as zero or more old events.

    It keeps what the old events need and today's do not carry: who is typing
    (``user-list`` has ``isTyping``), when users first appeared (``joinedAt``), and
    which bot replies this tab saw start (their stored ``chat`` becomes ``ai-complete``).
    """

    STREAMING_MAX = 64

    def __init__(self, hub: Hub, user_id: str) -> None:
        self.core = hub.core
        self.user_id = user_id
        self.typing: set[str] = set()
        self.joined: dict[str, int] = {}
        self.streaming: set[str] = set()

    def translate(self, frame: Frame) -> list[tuple[str, Any]]:
        kind = frame.type
        if kind in _UNSPOKEN:
            return []
        data: dict[str, Any] = decode(frame.json).get("data") or {}
        match kind:
            case "history":
                return [("history", [_message(m) for m in data.get("messages", [])])]
            case "presence" | "presence-diff":
                return [("user-list", self.user_list())]
            case "chat":
                return self._chat(data)
            case "typing":
                return self._typing(data)
            case "clear":
                return [("clear", _clear(data))]
            case "bot-state":
                return [("bot-state", {b["displayName"]: b["enabled"] for b in data["bots"]})]
            case "ai-stream":
                return self._ai(data)
            case "legacy-signal":
                return [("webrtc-signal", data)]
        return []  # an event newer than this view: the old client would not know it

    def user_list(self) -> list[dict[str, Any]]:
        """Everyone in presence, then the bots as the old server listed them."""
        now = _now_ms()
        users = self.core.presence.users
        if len(self.joined) > 2 * len(users) + 64:
            self.joined = {u: t for u, t in self.joined.items() if u in users}
        out: list[dict[str, Any]] = []
        for user_id, entry in users.items():
            peers = entry.peers.values()
            out.append(
                {
                    "userId": user_id,
                    "userName": entry.user_name,
                    "joinedAt": self.joined.setdefault(user_id, now),
                    "isTyping": user_id in self.typing,
                    "lastActivity": now,
                    "mediaState": {
                        "webcam": any(p.camera for p in peers),
                        "microphone": any(p.mic for p in peers),
                        "screen": any(p.screen for p in peers),
                    },
                }
            )
        for bot in self.core.bots.values():
            out.append(
                {
                    "userId": "ai-" + bot.display_name.lower(),
                    "userName": bot.display_name,
                    "joinedAt": 0,
                    "isTyping": False,
                    "lastActivity": 0,
                }
            )
        return out

    def _chat(self, data: dict[str, Any]) -> list[tuple[str, Any]]:
        if data.get("kind") == "user" and data.get("userId") == self.user_id:
            return []  # the old client shows its own message from the POST's reply
        reply_id = data.get("id")
        if data.get("kind") == "bot" and reply_id in self.streaming:
            self.streaming.discard(reply_id)
            done = {"messageId": reply_id, "content": data.get("text"), "botName": data["userName"]}
            return [("ai-complete", done)]
        return [("message", _message(data))]

    def _typing(self, data: dict[str, Any]) -> list[tuple[str, Any]]:
        user_id = data.get("userId")
        if data.get("isTyping"):
            self.typing.add(str(user_id))
        else:
            self.typing.discard(str(user_id))
        return [] if user_id == self.user_id else [("typing", data)]

    def _ai(self, data: dict[str, Any]) -> list[tuple[str, Any]]:
        """Deltas become ai-start + ai-chunk; ``done`` waits for the stored reply's text."""
        reply_id = str(data.get("id"))
        bot = self.core.bots.get(str(data.get("bot")))
        name = bot.display_name if bot is not None else str(data.get("bot"))
        if "delta" in data:
            out: list[tuple[str, Any]] = []
            if reply_id not in self.streaming:
                if len(self.streaming) >= self.STREAMING_MAX:
                    self.streaming.clear()
                self.streaming.add(reply_id)
                start = {"id": reply_id, "userId": "ai", "userName": name, "content": ""}
                out.append(("ai-start", {**start, "timestamp": _now_ms(), "type": "ai"}))
            out.append(
                ("ai-chunk", {"messageId": reply_id, "chunk": data["delta"], "botName": name})
            )
            return out
        if "error" in data and reply_id in self.streaming:
            self.streaming.discard(reply_id)
            return [("ai-error", {"messageId": reply_id, "error": str(data["error"])})]
        return []


def _clear(data: dict[str, Any]) -> dict[str, Any]:
    name = (data.get("by") or {}).get("userName") or "Someone"
    text = f"{name} cleared the chat"
    note = {"id": data.get("id"), "userId": "system", "userName": "System", "content": text}
    return {"clearedBy": name, "message": {**note, "timestamp": data.get("ts"), "type": "system"}}


def bots_data(described: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GET /api/bots``'s bots as the old client reads them (``data: [{name, role, …}]``)."""
    return [
        {
            "name": b["displayName"],
            "role": b["personality"],
            "triggers": [t.lstrip("@") for t in b.get("triggers", [])],
            "enabled": b.get("enabled", True),
            "botId": b["name"],
        }
        for b in described
    ]
