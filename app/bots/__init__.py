"""Bots: YAML personalities, who answers what, and streamed AI replies.

- :mod:`.personality` loads and validates the YAML personalities.
- :mod:`.triggers` decides who answers a message (mentions, chains, interjections).
- :mod:`.providers` turns a prompt into text deltas (``offline`` or ``openai``).
- :mod:`.service` is the ``BotService`` the hub calls; it streams ``ai-stream``
  events one reply at a time and appends each reply as a durable ``chat``.
- :mod:`.ntfy` pushes new messages to an ntfy-compatible server (optional).
- :mod:`.routes` serves ``GET /api/bots``.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from .ntfy import Notifier
from .personality import BotConfigError, Personality, load_personalities
from .providers import make_provider
from .service import BotRoom

if TYPE_CHECKING:
    from app.hub import Hub
    from app.settings import Settings

__all__ = ["BotConfigError", "BotRoom", "Personality", "create_bots", "load_personalities"]


def create_bots(settings: Settings, hub: Hub, personalities: list[Personality]) -> BotRoom:
    """The bot service for ``hub``, configured from ``settings``; set it as ``hub.bots``.

    ``personalities`` must be the ones the hub's core was built with
    (``Chat(config, [p.bot() for p in personalities])``).
    """
    store = hub.store

    async def history(limit: int) -> list[dict[str, Any]]:
        records = await store.recent(limit)
        return [json.loads(r.data) for r in records if r.type == "chat"]

    def enabled(name: str) -> bool:
        bot = hub.core.bots.get(name)
        return bot is not None and bot.enabled

    notifier = None
    if settings.ntfy_url:
        notifier = Notifier(settings.ntfy_url, settings.ntfy_topic, settings.ntfy_timeout)
    return BotRoom(
        hub,
        personalities,
        make_provider(settings),
        enabled=enabled,
        context_messages=settings.ai_context_messages,
        rng=random.Random(settings.ai_seed),
        interject_gap=settings.ai_interject_gap,
        history=history,
        notifier=notifier,
        audience=lambda: len(hub.conns),  # this process's fan-out: sets the delta interval
    )
