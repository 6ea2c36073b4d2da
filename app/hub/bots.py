"""The bots as the hub sees them: a service it notifies and asks, never awaits."""

from __future__ import annotations

from typing import Any, Protocol

from app.core import AskBot

from .requests import Origin

__all__ = ["BotService"]


class BotService(Protocol):
    """What the hub needs from the bots (``app.bots``); all calls return at once."""

    def on_chat(self, data: dict[str, Any]) -> None:
        """A chat message (user or bot) was committed; ``data`` is the chat event data."""

    def ask(self, request: AskBot, origin: Origin) -> None:
        """An ``ai-request``; on failure call ``hub.fail(origin, ClientError(...))``."""

    def on_clear(self) -> None:
        """The chat was cleared: cancel replies in flight."""

    def on_toggle(self, name: str, enabled: bool) -> None:
        """A bot was enabled or disabled: cancel its reply in flight when disabled."""

    async def close(self) -> None:
        """Shutdown: cancel everything (upstream requests included)."""
