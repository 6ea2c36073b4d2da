"""Who answers a chat message: mentions, bot-to-bot chains and interjections.

Sans-I/O and deterministic given its random generator. The rules:

- A ``@name`` or ``@alias`` mention (case-insensitive, whole word, not inside an
  e-mail address) wakes that bot if it is enabled; bots answer in the order
  they were mentioned. A bot never answers its own message.
- A bot's message that mentions other bots wakes them too: a *chain*. At most
  ``chain_limit`` (4) replies are woken by bots; a user's message resets the count.
- A user's message that mentions no bot may draw one *interjection*: each enabled
  bot, in random order, speaks up with probability ``shyness``. The bot that
  interjected on the previous user message sits this one out, so no bot
  interjects twice in a row, and after an interjection none follows for
  ``interject_gap`` seconds (given ``now``): in a busy room shyness per message
  would otherwise mean several unprompted replies a second, each a stream to
  every member. Bots' messages never draw interjections.
- System messages (joins, leaves) wake nobody.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .personality import Personality

__all__ = ["CHAIN_LIMIT", "INTERJECT_GAP", "Mentions", "Triggers", "Wake"]

CHAIN_LIMIT = 4
INTERJECT_GAP = 10.0  # least seconds between two unprompted replies in a room

Reason = Literal["mention", "chain", "interject"]


@dataclass(frozen=True, slots=True)
class Wake:
    """``bot`` should reply, because of ``reason``."""

    bot: str
    reason: Reason


class Mentions:
    """Finds ``@name``/``@alias`` mentions of the configured bots in a text."""

    def __init__(self, personalities: Iterable[Personality]) -> None:
        self._owner: dict[str, str] = {}
        for p in personalities:
            for trigger in p.triggers:
                self._owner[trigger.lower()] = p.name
        words = sorted(self._owner, key=len, reverse=True)  # longest first: @sol-bot before @sol
        alternatives = "|".join(re.escape(w) for w in words) or "(?!)"
        self._pattern = re.compile(rf"(?<![\w@])@({alternatives})(?![\w-])", re.IGNORECASE)

    def find(self, text: str) -> list[str]:
        """Bot names mentioned in ``text``, in order of first mention, without repeats."""
        found: list[str] = []
        for match in self._pattern.finditer(text):
            name = self._owner[match.group(1).lower()]
            if name not in found:
                found.append(name)
        return found


class Triggers:
    """The room's turn-taking state: the chain count and the last interjector."""

    def __init__(
        self,
        personalities: Iterable[Personality],
        rng: random.Random,
        chain_limit: int = CHAIN_LIMIT,
        interject_gap: float = INTERJECT_GAP,
    ) -> None:
        self._bots = {p.name: p for p in personalities}
        self.interject_gap = interject_gap
        self._quiet_until = float("-inf")  # no interjection before this ``now``
        self.mentions = Mentions(self._bots.values())
        self._rng = rng
        self.chain_limit = chain_limit
        self.chain = 0  # replies woken by bots since the last user message
        self.last_interjector: str | None = None

    def reset(self) -> None:
        """The chat was cleared: forget the chain and the last interjector."""
        self.chain = 0
        self.last_interjector = None
        self._quiet_until = float("-inf")

    def on_message(
        self, data: dict[str, Any], enabled: Callable[[str], bool], now: float | None = None
    ) -> list[Wake]:
        """A chat message was committed; which bots should reply, in order."""
        kind = data.get("kind")
        text = data.get("text")
        if not isinstance(text, str) or kind not in ("user", "bot"):
            return []
        author = data.get("bot") if kind == "bot" else None
        mentioned = [
            name
            for name in self.mentions.find(text)
            if name != author and name in self._bots and enabled(name)
        ]
        if kind == "user":
            self.chain = 0
            if mentioned:
                self.last_interjector = None
                return [Wake(name, "mention") for name in mentioned]
            if now is not None and now < self._quiet_until:
                return []
            drawn = self._interjection(enabled)
            if drawn and now is not None:
                self._quiet_until = now + self.interject_gap
            return drawn
        wakes: list[Wake] = []
        for name in mentioned:
            if self.chain >= self.chain_limit:
                break
            self.chain += 1
            wakes.append(Wake(name, "chain"))
        return wakes

    def _interjection(self, enabled: Callable[[str], bool]) -> list[Wake]:
        previous, self.last_interjector = self.last_interjector, None
        candidates = [
            p
            for p in self._bots.values()
            if p.shyness > 0 and p.name != previous and enabled(p.name)
        ]
        self._rng.shuffle(candidates)
        for p in candidates:
            if self._rng.random() < p.shyness:
                self.last_interjector = p.name
                return [Wake(p.name, "interject")]
        return []
