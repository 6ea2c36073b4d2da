"""AI providers behind one small interface: a prompt in, text deltas out.

- ``offline`` (default): an embedded generator that answers in each bot's voice
  from the conversation; no key, no network, deterministic under a seed.
- ``openai``: any OpenAI-compatible server through the official ``openai``
  package (``OPENAI_BASE_URL`` for vLLM, Ollama, llama.cpp, ...).

:meth:`Provider.stream` is an async generator of text deltas. It raises
:class:`ProviderError` (with a message fit for the chat) when the reply fails.
Cancelling the task that iterates it, or closing the generator, must stop the
upstream request. Providers are imported lazily, so ``openai`` loads only when
it is used.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..personality import Personality

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ["Line", "Prompt", "Provider", "ProviderError", "make_provider"]


class ProviderError(Exception):
    """The reply failed; ``str(err)`` is shown in ``ai-stream {error}``."""


@dataclass(frozen=True, slots=True)
class Line:
    """One chat message of the context, with its author's name."""

    seq: int
    name: str
    text: str
    bot: str | None = None  # set when a bot said it


@dataclass(frozen=True, slots=True)
class Prompt:
    """Everything a provider needs for one reply."""

    bot: Personality
    lines: tuple[Line, ...]  # the last N chat messages, oldest first
    interjection: bool = False
    request: str | None = None  # the prompt of an ``ai-request``
    asker: str = "everyone"  # who the reply answers
    roster: tuple[Personality, ...] = ()  # the other bots in the room

    @property
    def temperature(self) -> float:
        bot = self.bot
        return bot.interject_temperature if self.interjection else bot.reply_temperature

    @property
    def system(self) -> str:
        bot = self.bot
        prompt = bot.interject_prompt if self.interjection else bot.reply_prompt
        others = ", ".join(f"@{p.name} ({p.display_name})" for p in self.roster)
        room = (
            f"You are {bot.display_name} (@{bot.name}) in a group chat. Each message is "
            "prefixed with its author's name. Write only your own message, without a name "
            "prefix, and keep it short."
        )
        if others:
            room += f" Other bots here, whom you may @mention: {others}."
        return f"{prompt.strip()}\n\n{room}"

    def messages(self) -> list[dict[str, str]]:
        """The OpenAI chat format: the system prompt, then the context, then the request."""
        out = [{"role": "system", "content": self.system}]
        for line in self.lines:
            if line.bot == self.bot.name:
                out.append({"role": "assistant", "content": line.text})
            else:
                out.append({"role": "user", "content": f"{line.name}: {line.text}"})
        if self.request is not None:
            out.append({"role": "user", "content": f"{self.asker} (to you): {self.request}"})
        return out


class Provider(Protocol):
    name: str

    def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
        """Text deltas of the reply; raises :class:`ProviderError` when it fails."""
        ...

    async def close(self) -> None:
        """Release connections (called once, at shutdown)."""


def make_provider(settings: Settings) -> Provider:
    """The provider ``LASTRA_AI_PROVIDER`` names, configured from ``settings``."""
    if settings.ai_provider == "openai":
        try:
            from .openai_compat import OpenAIProvider
        except ImportError as exc:
            raise RuntimeError(
                "LASTRA_AI_PROVIDER=openai needs the openai package, a runtime dependency: "
                "install requirements/runtime.txt (or pip install lastra-chat)"
            ) from exc
        return OpenAIProvider.from_settings(settings)
    from .offline import OfflineProvider

    return OfflineProvider(seed=settings.ai_seed, delay=settings.ai_offline_delay)
