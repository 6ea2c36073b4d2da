"""``ai-request`` and the bots (PROTOCOL §4, §6): streams, the durable reply, and
``error ai_unavailable`` when a bot cannot answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.clients import (
    aio,
    asession,
    open_peer,
    running_server,
    uniq,
)
from support.server import Server, free_port


@pytest.fixture(scope="module")
def broken_ai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose OpenAI-compatible provider points at a port nobody listens on."""
    with running_server(
        tmp_path_factory,
        AI_PROVIDER="openai",
        OPENAI_API_KEY="sk-test-not-a-key",
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
        AI_RETRIES="0",
        AI_TIMEOUT="2",
    ) as s:
        yield s


@pytest.fixture(params=["ws", "sse"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def newcomer(srv: Server, transport: str) -> Any:
    return await open_peer(transport, srv, await asession(srv.http))


def enabled_bot(client: Any) -> str:
    return str(next(b["name"] for b in client.bots["bots"] if b["enabled"]))


@aio
async def test_ai_request_streams_a_reply_then_stores_it(srv: Server, transport: str) -> None:
    obs = await newcomer(srv, "sse" if transport == "ws" else "ws")
    ada = await newcomer(srv, transport)
    bot = enabled_bot(ada)
    reply = await ada.request("ai-request", {"prompt": "say something short", "bot": bot})
    assert reply.ok, reply
    stream_id = reply.data["id"]
    assert reply.data["bot"] == bot

    for client in (obs, ada):
        done = await client.expect(
            "ai-stream", lambda d: d["id"] == stream_id and d.get("done") is True, timeout=10
        )
        assert done["data"]["bot"] == bot
        assert "seq" not in done
        deltas = [
            e["data"]["delta"]
            for e in client.seen("ai-stream", lambda d: d["id"] == stream_id and "delta" in d)
        ]
        assert deltas, "the reply is streamed in deltas before done"
        final = await client.expect("chat", lambda d: d["id"] == stream_id)
        assert isinstance(final["seq"], int), "the full reply is durable"
        assert final["data"]["kind"] == "bot"
        assert final["data"]["bot"] == bot
        assert final["data"]["text"] == "".join(deltas).strip()
        assert client.seen("ai-stream", lambda d: d["id"] == stream_id and "error" in d) == []


@aio
async def test_mentioning_an_enabled_bot_wakes_it(srv: Server) -> None:
    obs = await newcomer(srv, "ws")
    ada = await newcomer(srv, "sse")
    bot = enabled_bot(ada)
    assert (await ada.chat(f"hello @{bot}, are you there?")).ok
    final = await obs.expect(
        "chat", lambda d: d.get("kind") == "bot" and d.get("bot") == bot, timeout=10
    )
    assert obs.seen("ai-stream", lambda d: d["id"] == final["data"]["id"])


@aio
async def test_ai_request_to_a_disabled_bot_is_ai_unavailable(srv: Server, transport: str) -> None:
    ada = await newcomer(srv, transport)
    bot = enabled_bot(ada)
    assert (await ada.request("bot-toggle", {"bot": bot, "enabled": False})).ok
    try:
        reply = await ada.request("ai-request", {"prompt": "hello?", "bot": bot})
        assert not reply.ok
        assert reply.code == "ai_unavailable", reply
        assert reply.data.get("ref")
        if transport == "sse":
            assert reply.status == 503
    finally:
        assert (await ada.request("bot-toggle", {"bot": bot, "enabled": True})).ok
    assert (await ada.chat("the chat goes on")).ok


@aio
async def test_ai_request_to_an_unknown_bot_is_not_found(srv: Server, transport: str) -> None:
    ada = await newcomer(srv, transport)
    reply = await ada.request("ai-request", {"prompt": "hi", "bot": uniq("nobot")})
    assert reply.code == "not_found", reply


@aio
async def test_failing_provider_ends_the_stream_and_answers_ai_unavailable(
    broken_ai: Server, transport: str
) -> None:
    obs = await newcomer(broken_ai, "sse" if transport == "ws" else "ws")
    ada = await newcomer(broken_ai, transport)
    bot = enabled_bot(ada)
    reply = await ada.request("ai-request", {"prompt": "anyone home?", "bot": bot})
    if reply.ok:
        # accepted, then the provider failed: the error comes as an event with the ref
        stream_id = reply.data["id"]
        ref = reply.data["ref"]
        err = await ada.expect("error", lambda d: d.get("ref") == ref, timeout=5)
        assert err["data"]["code"] == "ai_unavailable", err
        ended = await obs.expect(
            "ai-stream", lambda d: d["id"] == stream_id and "error" in d, timeout=5
        )
        assert ended["data"]["bot"] == bot
        assert obs.seen("chat", lambda d: d.get("id") == stream_id) == []
    else:
        assert reply.code == "ai_unavailable", reply
    cid = uniq("goes-on")
    assert (await ada.chat("the chat goes on", cid)).ok
    await obs.expect("chat", lambda d: d.get("clientId") == cid)
