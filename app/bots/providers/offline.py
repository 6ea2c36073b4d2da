"""The ``offline`` provider: answers in each bot's voice with no model and no network.

It is honest about it: every reply ends with the bot's ``honesty`` line, which
says it is offline. The words come from the personality's ``offline`` templates
(see :mod:`app.bots.personality`), filled from the conversation: who asked, the
most telling word of what they said, and a short quote. Choices come from a
generator seeded by ``seed``, the bot and the conversation, so with a seed the
same conversation always gets the same reply. The reply streams word by word,
with a small delay, like a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncGenerator

from . import Prompt

__all__ = ["OfflineProvider", "compose"]

_WORD = re.compile(r"[^\W\d_][\w'’-]*")
_TOKEN = re.compile(r"\S+\s*|\s+")
_MENTION = re.compile(r"(?<![\w@])@[\w-]+[,:]?")
_STOPWORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    out over own same she should so some such than that the their theirs them then there these
    they this those through to too under until up very was we were what when where which while
    who whom why will with would you your yours yourself hey hi hello please thanks thank okay
    ok yes yeah really think know like get got let lets tell say said want need make also
    anyone someone something anything"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def compose(prompt: Prompt, rng: random.Random) -> str:
    """The whole reply for ``prompt`` in the bot's voice, choices drawn from ``rng``."""
    voice = prompt.bot.voice
    said = _what_was_said(prompt)
    fields = {"asker": prompt.asker, "topic": _topic(said), "quote": _quote(said)}
    if prompt.interjection:
        body = rng.choice(voice.interjections).format(**fields)
    else:
        lines = list(voice.lines)
        rng.shuffle(lines)
        picked = lines[: 1 + int(len(lines) > 1 and rng.random() < 0.5)]
        parts = [rng.choice(voice.openers), *picked, rng.choice(voice.closers)]
        body = " ".join(p.format(**fields) for p in parts)
    return f"{body}\n\n{voice.honesty}"


def _what_was_said(prompt: Prompt) -> str:
    """The text being answered, without @mentions."""
    text = ""
    if prompt.request is not None:
        text = prompt.request
    else:
        for line in reversed(prompt.lines):
            if line.bot != prompt.bot.name:
                text = line.text
                break
    return " ".join(_MENTION.sub("", text).split())


def _topic(text: str) -> str:
    found: list[str] = _WORD.findall(text)
    words = [w for w in found if w.lower() not in _STOPWORDS and len(w) > 2]
    if not words:
        return "this"
    return max(words, key=len).strip("'’-").lower()  # the longest: usually the telling one


def _quote(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class OfflineProvider:
    name = "offline"

    def __init__(self, seed: int | None = None, delay: float = 0.03) -> None:
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**32)
        self.delay = delay

    def rng_for(self, prompt: Prompt) -> random.Random:
        key = "\x1f".join(
            [
                str(self.seed),
                prompt.bot.name,
                "interject" if prompt.interjection else "reply",
                prompt.asker,
                prompt.request or "",
                *(f"{line.name}\x1e{line.text}" for line in prompt.lines),
            ]
        )
        return random.Random(hashlib.sha256(key.encode()).digest())

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
        rng = self.rng_for(prompt)
        text = compose(prompt, rng)
        for token in _TOKEN.findall(text):
            if self.delay > 0:
                await asyncio.sleep(self.delay * (0.5 + rng.random()))
            yield token

    async def close(self) -> None:
        return None
