"""The offline provider: three distinct voices, honest, deterministic, streamed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from support.clients import SseClient, WsClient, aio, asession
from support.server import Server

from app.bots.personality import load_personalities
from app.bots.providers import Line, Prompt
from app.bots.providers.offline import OfflineProvider

BUNDLED = {p.name: p for p in load_personalities()}
CONTEXT = (
    Line(1, "Ada", "I read that bananas are radioactive"),
    Line(2, "Bob", "no way, source?"),
)


def prompt(bot: str, **kw: Any) -> Prompt:
    return Prompt(bot=BUNDLED[bot], lines=CONTEXT, asker="Bob", **kw)


async def reply(provider: OfflineProvider, p: Prompt) -> list[str]:
    return [token async for token in provider.stream(p)]


def test_same_seed_same_conversation_same_reply() -> None:
    async def main() -> None:
        for bot in BUNDLED:
            first = await reply(OfflineProvider(seed=42, delay=0), prompt(bot))
            again = await reply(OfflineProvider(seed=42, delay=0), prompt(bot))
            assert first == again
            assert len(first) > 5  # streamed token by token
        texts = {
            "".join(await reply(OfflineProvider(seed=s, delay=0), prompt("pip"))) for s in range(8)
        }
        assert len(texts) > 1  # the seed matters

    asyncio.run(main())


def test_three_distinct_honest_voices_built_from_the_conversation() -> None:
    async def main() -> None:
        provider = OfflineProvider(seed=1, delay=0)
        texts = {bot: "".join(await reply(provider, prompt(bot))) for bot in ("sol", "pip", "noor")}
        assert len(set(texts.values())) == 3
        for bot, text in texts.items():
            assert text.endswith(BUNDLED[bot].voice.honesty)
            assert "offline" in text.lower()
        # what was said last (by Bob) shapes the answer; mentions are not the topic
        asked = "".join(await reply(provider, prompt("noor", request="@noor is coffee healthy?")))
        assert "healthy" in asked and "@noor" not in asked

    asyncio.run(main())


def test_interjections_use_the_interjection_lines() -> None:
    async def main() -> None:
        provider = OfflineProvider(seed=3, delay=0)
        for bot in ("sol", "pip", "noor"):
            text = "".join(await reply(provider, prompt(bot, interjection=True)))
            body = text.removesuffix(BUNDLED[bot].voice.honesty).strip()
            templates = BUNDLED[bot].voice.interjections
            fields = {"asker": "Bob", "topic": "source", "quote": "no way, source?"}
            assert body in {t.format(**fields) for t in templates}, body

    asyncio.run(main())


async def ask_and_collect(client: WsClient | SseClient, bot: str, prompt: str) -> dict[str, Any]:
    reply = await client.request("ai-request", {"prompt": prompt, "bot": bot})
    assert reply.ok, reply
    sid = reply.data["id"]
    assert reply.data["bot"] == bot
    deltas = []
    while True:
        env = await client.expect("ai-stream", lambda d: d["id"] == sid, timeout=10)
        if "delta" in env["data"]:
            deltas.append(env["data"]["delta"])
            continue
        assert env["data"] == {"id": sid, "bot": bot, "done": True}
        break
    chat = await client.expect("chat", lambda d: d.get("id") == sid)
    # it grew in place: the first token at once, the rest coalesced (§6, ≤ ~10 deltas/s)
    assert len(deltas) >= 2, deltas
    assert chat["data"]["text"] == "".join(deltas).strip()
    return dict(chat["data"])


@aio
async def test_offline_server_answers_ai_requests_in_three_voices(make_server: object) -> None:
    srv: Server = make_server(AI_SEED="7", AI_OFFLINE_DELAY="0.001")  # type: ignore[operator]
    ada = await WsClient.open(srv, await asession(srv.http, "Ada"))
    bob = await SseClient.open(srv, await asession(srv.http, "Bob"))
    prompt = "why do volcanoes erupt?"
    texts = {}
    for bot, client in (("sol", ada), ("pip", bob), ("noor", ada)):
        chat = await ask_and_collect(client, bot, prompt)
        assert chat["kind"] == "bot"
        assert chat["userId"] == f"bot:{bot}"
        assert chat["userName"] == BUNDLED[bot].display_name
        assert chat["bot"] == bot
        assert isinstance(chat["seq"], int)
        texts[bot] = chat["text"]
    assert len(set(texts.values())) == 3
    assert all("offline" in text.lower() for text in texts.values())
    assert all("volcanoes" in text for text in texts.values())


@aio
async def test_offline_mention_reply_reaches_both_transports(make_server: object) -> None:
    srv: Server = make_server(AI_OFFLINE_DELAY="0.001")  # type: ignore[operator]
    ada = await WsClient.open(srv, await asession(srv.http, "Ada"))
    bob = await SseClient.open(srv, await asession(srv.http, "Bob"))
    assert (await bob.chat("@Pipster tell me about volcanoes")).ok
    for client in (ada, bob):
        chat = await client.expect("chat", lambda d: d.get("kind") == "bot", timeout=10)
        assert chat["data"]["bot"] == "pip"
        assert "volcanoes" in chat["data"]["text"]
        sid = chat["data"]["id"]
        streamed = [e for e in client.seen("ai-stream") if e["data"]["id"] == sid]
        assert streamed[-1]["data"].get("done") is True


@aio
async def test_offline_stream_is_coalesced_over_real_sockets(make_server: object) -> None:
    """At the default 30 ms a word, a reply arrives in ≤ ~10 deltas/s, exactly the stored text."""
    srv: Server = make_server(AI_SEED="7", AI_OFFLINE_DELAY="0.03")  # type: ignore[operator]
    ada = await WsClient.open(srv, await asession(srv.http, "Ada"))
    bob = await SseClient.open(srv, await asession(srv.http, "Bob"))
    reply = await ada.request("ai-request", {"prompt": "why do volcanoes erupt?", "bot": "sol"})
    assert reply.ok, reply
    sid = reply.data["id"]
    counts = []
    for client in (ada, bob):  # Bob's frames are all in by the time Ada's stream ends
        deltas, at = [], []
        while True:
            env = await client.expect("ai-stream", lambda d: d["id"] == sid, timeout=10)
            at.append(time.monotonic())
            if "delta" not in env["data"]:
                break
            deltas.append(env["data"]["delta"])
        chat = await client.expect("chat", lambda d: d.get("id") == sid)
        assert "".join(deltas).strip() == chat["data"]["text"]
        words = len(chat["data"]["text"].split())
        assert len(deltas) < words / 2, (len(deltas), words)  # several words per frame
        counts.append(len(deltas))
        if client is ada:  # timed as they arrived
            seconds = at[-1] - at[0]
            assert seconds > 0.3, seconds  # a real stream, not one burst
            assert len(deltas) <= seconds / 0.1 + 2, (len(deltas), seconds)
    assert counts[0] == counts[1]  # the same frames on both transports
