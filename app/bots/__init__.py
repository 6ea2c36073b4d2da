"""Bot personalities and AI providers.

Until YAML personalities land, three built-in bots exist so that ``bot-toggle``
and ``bot-state`` work end to end.
"""

from __future__ import annotations

from app.core import Bot

__all__ = ["builtin_bots"]


def builtin_bots() -> list[Bot]:
    return [
        Bot("sol", "Sol", "warm, helpful explainer"),
        Bot("pip", "Pip", "quick-witted joker"),
        Bot("noor", "Noor", "careful skeptic who asks for sources"),
    ]
