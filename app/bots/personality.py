"""Bot personalities: one YAML file per bot, validated with errors that name file and field.

A personality file (see ``app/bots/personalities/*.yaml`` for complete examples)::

    name: sol                 # the @mention; lowercase letters, digits, - and _
    order: 1                  # list position (then file name); the first enabled bot
                              # answers an ai-request that names no bot
    display_name: Sol
    role: warm, patient explainer          # shown to clients as ``personality``
    aliases: [sunny]          # more @mentions that wake the bot (the name always does)
    shyness: 0.08             # chance (0..1) of an unprompted interjection per message
    temperature: {reply: 0.6, interject: 0.9}
    model: null               # overrides LASTRA_AI_MODEL for this bot
    prompts:
      reply: "You are Sol, ..."       # system prompt when asked or mentioned
      interject: "You are Sol, ..."   # system prompt for an unprompted interjection
    offline:                  # the voice of the offline provider (no model, no network)
      openers: ["Happy to help, {asker}!"]
      lines: ["Here is how I see “{topic}”: ..."]
      closers: ["One step at a time."]
      interjections: ["Popping in, {asker}: ..."]
      honesty: "(I'm running offline: no language model is connected.)"

Offline templates may use ``{asker}`` (who is being answered), ``{topic}`` (the most
telling word of what they said) and ``{quote}`` (the start of what they said).

:func:`load_personalities` reads a folder (``LASTRA_BOTS_DIR``, else the bundled
one) and raises :class:`BotConfigError` on the first bad file, e.g.
``bad.yaml: field 'shyness': Input should be less than or equal to 1``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.core import Bot

__all__ = [
    "BUNDLED_DIR",
    "BotConfigError",
    "Personality",
    "Voice",
    "load_personalities",
    "parse_personality",
]

BUNDLED_DIR = Path(__file__).parent / "personalities"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
TEMPLATE_FIELDS = frozenset({"asker", "topic", "quote"})


class BotConfigError(ValueError):
    """A personality file is missing, unreadable or invalid; the message names file and field."""


@dataclass(frozen=True, slots=True)
class Voice:
    """What the offline provider says in this bot's voice (templates, see the module doc)."""

    openers: tuple[str, ...]
    lines: tuple[str, ...]
    closers: tuple[str, ...]
    interjections: tuple[str, ...]
    honesty: str


@dataclass(frozen=True, slots=True)
class Personality:
    """One bot as configured: who it is, what wakes it, and how it talks."""

    name: str
    display_name: str
    role: str
    aliases: tuple[str, ...]
    shyness: float
    reply_temperature: float
    interject_temperature: float
    reply_prompt: str
    interject_prompt: str
    model: str | None
    voice: Voice
    source: str = ""
    order: int = 100

    @property
    def triggers(self) -> tuple[str, ...]:
        """Every word that wakes this bot as ``@word`` (lowercase, name first)."""
        return (self.name, *(a for a in self.aliases if a != self.name))

    @property
    def user_id(self) -> str:
        return f"bot:{self.name}"

    def bot(self, enabled: bool = True) -> Bot:
        """The core's view of this bot (name, display name, personality, enabled)."""
        return Bot(self.name, self.display_name, self.role, enabled)

    def wire(self) -> dict[str, Any]:
        """What ``GET /api/bots`` shows (prompts stay on the server)."""
        return {
            "name": self.name,
            "displayName": self.display_name,
            "personality": self.role,
            "triggers": [f"@{t}" for t in self.triggers],
            "shyness": self.shyness,
            "model": self.model,
        }


# ------------------------------------------------------------------ file schema


def _check_templates(values: list[str]) -> list[str]:
    for value in values:
        for _, field_name, _, _ in string.Formatter().parse(value):
            if field_name is not None and field_name not in TEMPLATE_FIELDS:
                allowed = ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS))
                raise ValueError(f"unknown placeholder {{{field_name}}} (allowed: {allowed})")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class _Temperature(_Strict):
    reply: float = Field(0.7, ge=0, le=2)
    interject: float = Field(0.9, ge=0, le=2)


class _Prompts(_Strict):
    reply: str = Field(min_length=1, max_length=8000)
    interject: str | None = Field(None, min_length=1, max_length=8000)


class _Offline(_Strict):
    openers: list[str] = Field(min_length=1)
    lines: list[str] = Field(min_length=1)
    closers: list[str] = Field(min_length=1)
    interjections: list[str] = Field(min_length=1)
    honesty: str = Field(min_length=1)

    @field_validator("openers", "lines", "closers", "interjections")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        return _check_templates(value)

    @field_validator("honesty")
    @classmethod
    def _honesty(cls, value: str) -> str:
        _check_templates([value])
        if "offline" not in value.lower():
            raise ValueError("must say the bot is offline (contain the word 'offline')")
        return value


def _default_offline(display_name: str) -> _Offline:
    return _Offline(
        openers=["Hi {asker}."],
        lines=["You said: “{quote}”. I'd need a real model to say something clever about it."],
        closers=["Back to you."],
        interjections=["Just listening in, {asker}: “{topic}” caught my eye."],
        honesty=f"({display_name} is running offline: no language model is connected.)",
    )


class _PersonalityFile(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    order: int = Field(100, ge=0, le=1_000_000)
    display_name: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=200)
    aliases: list[str] = []
    shyness: float = Field(0.0, ge=0, le=1)
    temperature: _Temperature = _Temperature()
    model: str | None = Field(None, min_length=1, max_length=200)
    prompts: _Prompts
    offline: _Offline | None = None

    @field_validator("name", "aliases", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip().lower()
        if isinstance(value, list):
            return [v.strip().lower() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        for alias in value:
            if not re.match(NAME_PATTERN, alias):
                raise ValueError(
                    f"alias {alias!r} must be 1-32 lowercase letters, digits, '-' or '_'"
                )
        return value


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_personality(text: str, source: str) -> Personality:
    """Parse one personality file's text; ``source`` (its name) goes into every error."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise BotConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise BotConfigError(f"{source}: expected a mapping of fields (name, display_name, ...)")
    try:
        spec = _PersonalityFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{_where(err['loc'])}': {err['msg']}" for err in exc.errors()[:5]
        )
        raise BotConfigError(f"{source}: {problems}") from None
    offline = spec.offline or _default_offline(spec.display_name)
    interject = spec.prompts.interject or (
        spec.prompts.reply
        + "\n\nNobody asked you directly: chime in with one short, relevant remark."
    )
    return Personality(
        name=spec.name,
        display_name=spec.display_name,
        role=spec.role,
        aliases=tuple(dict.fromkeys(spec.aliases)),
        shyness=spec.shyness,
        reply_temperature=spec.temperature.reply,
        interject_temperature=spec.temperature.interject,
        reply_prompt=spec.prompts.reply,
        interject_prompt=interject,
        model=spec.model,
        voice=Voice(
            openers=tuple(offline.openers),
            lines=tuple(offline.lines),
            closers=tuple(offline.closers),
            interjections=tuple(offline.interjections),
            honesty=offline.honesty,
        ),
        source=source,
        order=spec.order,
    )


def load_personalities(folder: Path | None = None) -> list[Personality]:
    """Every ``*.yaml``/``*.yml`` in ``folder`` (default: the bundled ones).

    Sorted by ``order``, then by file name.

    Raises :class:`BotConfigError` naming the file and field at fault, when the
    folder has no personality, or when a name or alias is claimed twice.
    """
    folder = folder or BUNDLED_DIR
    if not folder.is_dir():
        raise BotConfigError(f"{folder}: LASTRA_BOTS_DIR is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise BotConfigError(f"{folder}: no bot personalities (*.yaml) in this folder")
    bots: list[Personality] = []
    claimed: dict[str, str] = {}  # trigger → file that claimed it
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BotConfigError(f"{path.name}: cannot read the file: {exc}") from None
        bot = parse_personality(text, path.name)
        for trigger in bot.triggers:
            field_name = "name" if trigger == bot.name else "aliases"
            if trigger in claimed:
                raise BotConfigError(
                    f"{path.name}: field '{field_name}': {trigger!r} is already used by "
                    f"{claimed[trigger]}"
                )
            claimed[trigger] = path.name
        bots.append(bot)
    return sorted(bots, key=lambda b: b.order)  # stable: file name order among equals
