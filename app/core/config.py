"""Who is speaking and how the room is set up: identities, bots, the chat's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import MAX_TEXT_CHARS
from .ratelimit import Rate

__all__ = ["LEGACY_TRANSPORT", "Bot", "ChatConfig", "Identity"]

#: peers of SSE-era tabs (the legacy wire): listed, but they negotiate calls their own way
LEGACY_TRANSPORT = "sse-legacy"


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified user (from a signed token)."""

    user_id: str
    user_name: str


@dataclass(slots=True)
class Bot:
    name: str
    display_name: str
    personality: str
    enabled: bool = True

    def wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "personality": self.personality,
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class ChatConfig:
    typing_timeout: float = 5.0
    presence_grace: float = 5.0
    presence_batch: float = 0.25
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 75.0
    history_limit: int = 256
    #: above this many users a newcomer's ``presence`` is partial and the rest is paged
    presence_snapshot_max: int = 200
    presence_page: int = 50  # a large room's page: what a sidebar shows, not 200
    presence_batch_large: float = 0.5  # a large room's batch: fewer, bigger diffs
    max_message_bytes: int = 65536
    rate_chat: Rate = field(default_factory=lambda: Rate(5, 20))
    rate_signal: Rate = field(default_factory=lambda: Rate(50, 200))
    rate_other: Rate = field(default_factory=lambda: Rate(20, 60))
    rate_report: Rate = field(default_factory=lambda: Rate(1, 20))
    node: str = "local"
    ai_available: bool = False
    #: userIds that may clear the chat and toggle bots; empty: anyone (the original app)
    moderators: frozenset[str] = frozenset()

    def limits(self) -> dict[str, Any]:
        return {
            "maxMessageBytes": self.max_message_bytes,
            "maxTextChars": MAX_TEXT_CHARS,
            "historyLimit": self.history_limit,
            "typingTimeout": self.typing_timeout,
            "presenceGrace": self.presence_grace,
            "heartbeatTimeout": self.heartbeat_timeout,
        }
