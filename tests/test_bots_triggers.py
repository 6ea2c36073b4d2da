"""Who answers what: mentions, chains, interjections (the sans-I/O rules)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from support.fake_openai import bot_yaml

from app.bots.personality import Personality, parse_personality
from app.bots.triggers import Mentions, Triggers, Wake


def bots(*specs: tuple[str, float, tuple[str, ...]]) -> list[Personality]:
    return [
        parse_personality(bot_yaml(name, shyness=shy, aliases=aliases), f"{name}.yaml")
        for name, shy, aliases in specs
    ]


QUIET = bots(("sol", 0.0, ("sunny",)), ("pip", 0.0, ()), ("noor", 0.0, ("sol-bot",)))
_seq = iter(range(1, 1_000_000))


def user(text: str) -> dict[str, Any]:
    return {"seq": next(_seq), "kind": "user", "userName": "Ada", "text": text}


def said_by(bot: str, text: str) -> dict[str, Any]:
    return {"seq": next(_seq), "kind": "bot", "bot": bot, "userName": bot.title(), "text": text}


def everyone(name: str) -> bool:
    return True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@sol hi", ["sol"]),
        ("hey @SOL, you there?", ["sol"]),
        ("(@Sunny) and @pip!", ["sol", "pip"]),
        ("@pip @sol @pip", ["pip", "sol"]),
        ("@sol-bot wins over @sol", ["noor", "sol"]),
        ("sol without the at sign", []),
        ("mail ada@sol.example", []),
        ("@solar is not @sol_", []),
        ("@@sol", []),
        ("'@noor's point'", ["noor"]),
    ],
)
def test_mentions_are_case_insensitive_and_whole_words(text: str, expected: list[str]) -> None:
    assert Mentions(QUIET).find(text) == expected


def test_a_user_mention_wakes_enabled_bots_in_order() -> None:
    t = Triggers(QUIET, random.Random(1))
    assert t.on_message(user("@pip then @sol"), everyone) == [
        Wake("pip", "mention"),
        Wake("sol", "mention"),
    ]
    assert t.on_message(user("@pip then @sol"), lambda n: n != "pip") == [Wake("sol", "mention")]


def test_system_messages_and_plain_user_messages_wake_nobody_when_all_are_shy() -> None:
    t = Triggers(QUIET, random.Random(1))
    assert t.on_message({"seq": 1, "kind": "system", "text": "@sol joined"}, everyone) == []
    assert t.on_message(user("nothing for bots"), everyone) == []


def test_a_bot_never_answers_itself() -> None:
    t = Triggers(QUIET, random.Random(1))
    assert t.on_message(said_by("sol", "I, @sol, and @pip"), everyone) == [Wake("pip", "chain")]


def test_a_chain_stops_after_four_and_a_user_message_resets_it() -> None:
    t = Triggers(QUIET, random.Random(1))
    assert t.on_message(user("@sol start"), everyone) == [Wake("sol", "mention")]
    woken = []
    speaker = "sol"
    for _ in range(10):
        other = "pip" if speaker == "sol" else "sol"
        wakes = t.on_message(said_by(speaker, f"@{other} your turn"), everyone)
        if not wakes:
            break
        woken += wakes
        speaker = other
    assert [w.reason for w in woken] == ["chain"] * 4
    assert [w.bot for w in woken] == ["pip", "sol", "pip", "sol"]
    assert t.on_message(said_by("pip", "@sol more?"), everyone) == []
    assert t.on_message(user("@noor reset"), everyone) == [Wake("noor", "mention")]
    assert t.on_message(said_by("noor", "@sol over to you"), everyone) == [Wake("sol", "chain")]


def test_one_bot_message_mentioning_two_counts_twice_in_the_chain() -> None:
    t = Triggers(QUIET, random.Random(1), chain_limit=3)
    assert len(t.on_message(said_by("sol", "@pip @noor"), everyone)) == 2
    assert t.on_message(said_by("pip", "@sol @noor"), everyone) == [Wake("sol", "chain")]
    assert t.chain == 3


def test_a_disabled_bot_is_not_woken_by_a_chain() -> None:
    t = Triggers(QUIET, random.Random(1))
    assert t.on_message(said_by("sol", "@pip"), lambda n: n != "pip") == []
    assert t.chain == 0


def test_interjections_follow_shyness_and_never_come_twice_in_a_row() -> None:
    t = Triggers(bots(("chatty", 1.0, ())), random.Random(1))
    results = [t.on_message(user(f"message {i}"), everyone) for i in range(6)]
    assert results == [[Wake("chatty", "interject")], []] * 3


def test_after_an_interjection_none_follows_for_the_gap_but_mentions_do() -> None:
    t = Triggers(bots(("a", 1.0, ()), ("b", 1.0, ())), random.Random(3), interject_gap=10.0)
    assert t.on_message(user("m0"), everyone, now=100.0)[0].reason == "interject"
    quiet = [t.on_message(user(f"m{i}"), everyone, now=100.0 + i) for i in range(1, 10)]
    assert quiet == [[]] * 9  # a busy room: one unprompted reply per 10 s, not one per message
    assert t.on_message(user("@a hi"), everyone, now=105.0) == [Wake("a", "mention")]
    assert t.on_message(user("m10"), everyone, now=110.0)[0].reason == "interject"
    t.reset()  # a clear forgets the gap too
    assert t.on_message(user("m11"), everyone, now=110.5)[0].reason == "interject"


def test_interjections_rotate_between_eager_bots() -> None:
    t = Triggers(bots(("a", 1.0, ()), ("b", 1.0, ())), random.Random(3))
    speakers = [t.on_message(user(f"m{i}"), everyone)[0].bot for i in range(8)]
    assert all(x != y for x, y in itertools.pairwise(speakers))


def test_interjection_rate_is_about_shyness() -> None:
    t = Triggers(bots(("shy", 0.2, ())), random.Random(7))
    spoke = 0
    for i in range(2000):
        if t.on_message(user(f"m{i}"), everyone):
            spoke += 1
    # about 0.2 of the messages, minus those right after an interjection
    assert 0.12 < spoke / 2000 < 0.22


def test_no_interjection_on_a_mention_or_a_bot_message_or_when_disabled() -> None:
    t = Triggers(bots(("chatty", 1.0, ()), ("sol", 0.0, ())), random.Random(1))
    assert t.on_message(user("@sol hi"), everyone) == [Wake("sol", "mention")]
    assert t.on_message(said_by("sol", "hello all"), everyone) == []
    assert t.on_message(user("plain"), lambda n: n != "chatty") == []
    assert t.on_message(user("plain"), everyone) == [Wake("chatty", "interject")]


def test_reset_forgets_chain_and_last_interjector() -> None:
    t = Triggers(bots(("chatty", 1.0, ()), ("sol", 0.0, ())), random.Random(1))
    assert t.on_message(user("plain"), everyone) == [Wake("chatty", "interject")]
    for _ in range(4):
        t.on_message(said_by("chatty", "@sol"), everyone)
    t.reset()
    assert t.chain == 0
    assert t.on_message(user("plain"), everyone) == [Wake("chatty", "interject")]
