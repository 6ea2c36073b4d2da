"""The bot service in-process: a fake hub, a scripted provider, no sockets."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from support.fake_openai import bot_yaml

from app.bots.personality import parse_personality
from app.bots.providers import Prompt, ProviderError
from app.bots.service import BotRoom
from app.core import AskBot, ClientError, Draft, Event

SOL = parse_personality(bot_yaml("sol"), "sol.yaml")
CHATTY = parse_personality(bot_yaml("chatty", shyness=1.0), "chatty.yaml")


class FakeHub:
    """Records what the bots send; ``append`` commits like the hub (seq, then on_chat)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.chats: list[dict[str, Any]] = []
        self.failed: list[ClientError] = []
        self.answered: list[dict[str, Any]] = []
        self.seq = 0
        self.bots: BotRoom | None = None
        self.changed = asyncio.Event()

    def broadcast_event(self, event: Event) -> None:
        self.events.append(event.data)
        self.changed.set()

    def fail(self, origin: Any, err: ClientError) -> None:
        self.failed.append(err)
        self.changed.set()

    def answer(self, origin: Any, data: dict[str, Any]) -> None:
        self.answered.append(data)

    async def append(self, draft: Draft) -> None:
        self.commit(draft.data)

    def commit(self, data: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        data = {**data, "seq": self.seq}
        self.chats.append(data)
        assert self.bots is not None
        self.bots.on_chat(data)
        self.changed.set()
        return data

    def say(self, name: str, text: str) -> dict[str, Any]:
        return self.commit({"id": f"m{self.seq}", "kind": "user", "userName": name, "text": text})

    async def until(self, cond: Callable[[], bool], timeout: float = 3.0) -> None:
        """Wait for ``cond``: woken by what the bots send, re-checked every 10 ms."""
        async with asyncio.timeout(timeout):
            while not cond():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.01)


class Scripted:
    """A provider whose replies come from ``reply(prompt)``; records prompts and closes."""

    name = "scripted"

    def __init__(self, reply: Callable[[Prompt], list[str] | Exception]) -> None:
        self.reply = reply
        self.prompts: list[Prompt] = []
        self.closed = 0

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
        self.prompts.append(prompt)
        script = self.reply(prompt)
        try:
            if isinstance(script, Exception):
                raise script
            for piece in script:
                await asyncio.sleep(0)
                yield piece
        finally:
            self.closed += 1

    async def close(self) -> None:
        return None


def room(provider: Scripted, *bots: Any, history: Any = None, **kw: Any) -> tuple[FakeHub, BotRoom]:
    hub = FakeHub()
    service = BotRoom(
        hub,
        bots or (SOL,),
        provider,
        enabled=lambda name: True,
        rng=random.Random(1),
        history=history,
        **kw,
    )
    hub.bots = service
    return hub, service


def test_a_long_reply_is_cut_at_4000_chars_and_the_upstream_closed() -> None:
    async def main() -> None:
        provider = Scripted(lambda p: ["x" * 100] * 60)
        hub, bots = room(provider)
        hub.say("Ada", "@sol talk")
        await hub.until(lambda: any(c["kind"] == "bot" for c in hub.chats))
        reply = hub.chats[-1]
        assert len(reply["text"]) == 4000
        assert provider.closed == 1
        await bots.close()

    asyncio.run(main())


def test_a_failed_interjection_is_quiet_but_a_failed_mention_is_not() -> None:
    async def main() -> None:
        provider = Scripted(lambda p: ProviderError("model down"))
        hub, bots = room(provider, CHATTY, SOL)
        hub.say("Ada", "just chatting")
        await hub.until(lambda: bots.busy == 0 and len(provider.prompts) == 1)
        assert provider.prompts[0].interjection
        assert hub.events == []
        hub.say("Ada", "@sol you there?")
        await hub.until(lambda: len(hub.events) == 1)
        assert hub.events[0]["error"] == "model down"
        assert hub.failed == []  # a mention has no requester to answer
        await bots.close()

    asyncio.run(main())


def test_a_failed_request_answers_the_requester_with_ai_unavailable() -> None:
    async def main() -> None:
        provider = Scripted(lambda p: ProviderError("model down"))
        hub, bots = room(provider)
        bots.ask(AskBot("sol", "hi?", "u1", "Ada", "r1"), origin="conn")
        assert hub.answered == [{"id": hub.answered[0]["id"], "bot": "sol", "ref": "r1"}]
        await hub.until(lambda: bool(hub.failed))
        assert hub.failed[0].data() == {
            "code": "ai_unavailable",
            "message": "Sol could not answer: model down",
            "ref": "r1",
        }
        assert hub.events == [{"id": hub.answered[0]["id"], "bot": "sol", "error": "model down"}]
        await bots.close()

    asyncio.run(main())


def test_too_many_replies_in_flight_are_refused() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        class Slow(Scripted):
            async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
                await gate.wait()
                yield "done"

        hub, bots = room(Slow(lambda p: []), max_turns=3)
        for _ in range(5):
            hub.say("Ada", "@sol again")
        assert bots.busy == 3
        bots.ask(AskBot("sol", "and me?", "u1", "Ada", "r9"), origin="conn")
        assert hub.failed[-1].code == "ai_unavailable"
        gate.set()
        await hub.until(lambda: bots.busy == 0)
        assert [c["text"] for c in hub.chats if c["kind"] == "bot"] == ["done"] * 3
        await bots.close()

    asyncio.run(main())


def test_the_context_is_seeded_once_from_history_and_merged_by_seq() -> None:
    async def main() -> None:
        stored = [
            {"seq": 1, "kind": "user", "userName": "Old", "text": "from before the restart"},
            {"seq": 2, "kind": "system", "userName": None, "text": "Ada joined"},
            {"seq": 3, "kind": "bot", "bot": "sol", "userName": "Sol", "text": "I remember"},
        ]
        calls = []

        async def history(limit: int) -> list[dict[str, Any]]:
            calls.append(limit)
            return stored

        provider = Scripted(lambda p: ["ok"])
        hub, bots = room(provider, history=history, context_messages=3)
        hub.seq = 3
        hub.say("Ada", "@sol hello")  # seq 4, seen live before the history is read
        await hub.until(lambda: bots.busy == 0 and len(hub.chats) == 2)
        hub.say("Ada", "@sol again")
        await hub.until(lambda: bots.busy == 0 and len(hub.chats) == 4)
        first, second = provider.prompts
        assert [(x.seq, x.name, x.text) for x in first.lines] == [
            (1, "Old", "from before the restart"),
            (3, "Sol", "I remember"),
            (4, "Ada", "@sol hello"),
        ]
        assert first.messages()[2] == {"role": "assistant", "content": "I remember"}
        assert [x.text for x in second.lines] == ["@sol hello", "ok", "@sol again"]
        assert calls == [3 + 32]
        await bots.close()

    asyncio.run(main())


def test_clear_forgets_the_context() -> None:
    async def main() -> None:
        provider = Scripted(lambda p: ["ok"])
        hub, bots = room(provider)
        hub.say("Ada", "secret plans")
        bots.on_clear()
        hub.say("Ada", "@sol what were the plans?")
        await hub.until(lambda: bots.busy == 0 and len(provider.prompts) == 1)
        assert [x.text for x in provider.prompts[0].lines] == ["@sol what were the plans?"]
        await bots.close()

    asyncio.run(main())


def test_close_cancels_thinking_and_closes_the_provider_stream() -> None:
    async def main() -> None:
        started = asyncio.Event()

        class Hang(Scripted):
            async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
                self.prompts.append(prompt)
                try:
                    yield "thinking"
                    started.set()
                    await asyncio.Event().wait()
                    yield "never"
                finally:
                    self.closed += 1

        provider = Hang(lambda p: [])
        hub, bots = room(provider)
        hub.say("Ada", "@sol ponder")
        await asyncio.wait_for(started.wait(), 3)
        await bots.close()
        assert provider.closed == 1
        hub.say("Ada", "@sol after close")  # ignored once closed
        assert bots.busy == 0
        assert len(provider.prompts) == 1

    asyncio.run(main())


# ------------------------------------------------------------ coalesced streams


class Timed(FakeHub):
    """Also records when each ``ai-stream`` delta went out (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def broadcast_event(self, event: Event) -> None:
        if "delta" in event.data:
            self.at.append(time.monotonic())
        super().broadcast_event(event)


class Trickle(Scripted):
    """A fast model: ``tokens`` tokens, ``gap`` seconds apart."""

    def __init__(self, tokens: list[str], gap: float) -> None:
        super().__init__(lambda p: tokens)
        self.gap = gap

    async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
        self.prompts.append(prompt)
        for token in self.reply(prompt):  # type: ignore[union-attr]
            await asyncio.sleep(self.gap)
            yield token


def timed_room(provider: Scripted, *bots: Any, **kw: Any) -> tuple[Timed, BotRoom]:
    hub = Timed()
    service = BotRoom(
        hub, bots or (SOL,), provider, enabled=lambda n: True, rng=random.Random(1), **kw
    )
    hub.bots = service
    return hub, service


def check_stream(hub: Timed, interval: float, seconds: float) -> list[str]:
    """The deltas: at least ``interval`` apart, few, and exactly the stored reply."""
    deltas = [e["delta"] for e in hub.events if "delta" in e]
    [reply] = [c for c in hub.chats if c["kind"] == "bot"]
    assert "".join(deltas).strip() == reply["text"]
    # the last delta flushes what is left with the end, at once; the others wait their turn
    gaps = [b - a for a, b in zip(hub.at, hub.at[1:-1], strict=False)]
    assert gaps and min(gaps) >= interval * 0.95, gaps
    assert len(deltas) <= seconds / interval + 2, len(deltas)
    return deltas


def test_a_fast_stream_is_coalesced_to_ten_deltas_a_second_and_stays_exact() -> None:
    async def main() -> None:
        tokens = [f"w{i} " for i in range(120)]  # ~240 tokens/s for half a second
        hub, bots = timed_room(Trickle(tokens, 0.004))
        t0 = time.monotonic()
        hub.say("Ada", "@sol go")
        await hub.until(lambda: any(c["kind"] == "bot" for c in hub.chats))
        deltas = check_stream(hub, 0.1, time.monotonic() - t0)
        assert deltas[0] == "w0 "  # the first token goes out at once
        assert 3 <= len(deltas) < 20  # 120 tokens in a handful of frames
        assert hub.events[-1].get("done") is True
        await bots.close()

    asyncio.run(main())


def test_a_large_room_gets_fewer_deltas_per_second() -> None:
    async def main() -> None:
        tokens = [f"w{i} " for i in range(300)]  # ~1.2 s of tokens
        hub, bots = timed_room(Trickle(tokens, 0.004), audience=lambda: 5_000)
        t0 = time.monotonic()
        hub.say("Ada", "@sol go")
        await hub.until(lambda: any(c["kind"] == "bot" for c in hub.chats))
        check_stream(hub, 0.5, time.monotonic() - t0)  # 5,000 connections: 2 deltas/s
        await bots.close()

    asyncio.run(main())


def test_a_slow_stream_is_not_held_back() -> None:
    async def main() -> None:
        hub, bots = timed_room(Trickle(["a ", "b ", "c"], 0.15))
        hub.say("Ada", "@sol go")
        await hub.until(lambda: any(c["kind"] == "bot" for c in hub.chats))
        assert [e["delta"] for e in hub.events if "delta" in e] == ["a ", "b ", "c"]
        await bots.close()

    asyncio.run(main())


def test_an_interjection_waits_in_line_at_most_once() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        class Held(Scripted):
            async def stream(self, prompt: Prompt) -> AsyncGenerator[str, None]:
                self.prompts.append(prompt)
                await gate.wait()
                yield "hm"

        eager = parse_personality(bot_yaml("eager", shyness=1.0), "eager.yaml")
        provider = Held(lambda p: [])
        hub, bots = room(provider, CHATTY, eager, SOL, interject_gap=0.0)
        for text in ("one", "two", "three", "four"):  # interjectors alternate
            hub.say("Ada", text)
            await asyncio.sleep(0)  # messages arrive apart: the speaker takes the first
        # the first speaks (thinking), the second waits in line, the rest stay silent
        assert bots.busy == 2
        hub.say("Ada", "@sol and you?")  # asked: never skipped
        assert bots.busy == 3
        gate.set()
        await hub.until(lambda: bots.busy == 0)
        assert len([c for c in hub.chats if c["kind"] == "bot"]) == 3
        await bots.close()

    asyncio.run(main())
