"""Bots on the ``openai`` provider: the real ``openai`` client against a fake server.

Each test starts ``python -m app`` with ``LASTRA_AI_PROVIDER=openai`` and
``OPENAI_BASE_URL`` pointing at :class:`fake_openai.FakeOpenAI`, which streams
real ``chat.completion.chunk`` lines (or fails, stalls, drops) and records
whether the server closed each request.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clients import SseClient, WsClient, aio, asession
from support.fake_openai import FakeOpenAI, FakeRequest, Script, bot_of, bot_yaml
from support.server import Server

QUIET_BOTS = {
    "sol": bot_yaml("sol", aliases=("sunny",)),
    "pip": bot_yaml("pip"),
    "noor": bot_yaml("noor"),
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def start(
    fake: FakeOpenAI, make_server: Callable[..., Server], tmp_path: Path
) -> Callable[..., Server]:
    """``start(bots=..., **settings)``: a server whose bots talk to the fake."""
    fake.reset()

    def factory(bots: dict[str, str] | None = None, **settings: str) -> Server:
        folder = tmp_path / f"bots-{len(list(tmp_path.glob('bots-*')))}"
        folder.mkdir()
        for name, text in (bots or QUIET_BOTS).items():
            (folder / f"{name}.yaml").write_text(text)
        base = {"AI_PROVIDER": "openai", "AI_TIMEOUT": "3", "AI_RETRIES": "1"}
        srv = make_server(start=False, BOTS_DIR=str(folder), **{**base, **settings})
        srv.env["OPENAI_BASE_URL"] = fake.url
        srv.env["OPENAI_API_KEY"] = "test-key"
        srv.start()
        return srv

    return factory


async def join(srv: Server, name: str = "Ada", transport: str = "ws") -> WsClient | SseClient:
    user = await asession(srv.http, name)
    if transport == "sse":
        return await SseClient.open(srv, user)
    return await WsClient.open(srv, user)


async def stream_of(
    client: WsClient | SseClient, sid: str | None = None, timeout: float = 5.0
) -> tuple[str, dict[str, Any], list[str]]:
    """Follow one ``ai-stream`` (the next one, or ``sid``) to its end.

    Returns (stream id, terminal data, deltas).
    """
    first = await client.expect(
        "ai-stream", (lambda d: d["id"] == sid) if sid else None, timeout=timeout
    )
    data = first["data"]
    stream_id = data["id"]
    deltas: list[str] = []
    while "delta" in data:
        deltas.append(data["delta"])
        env = await client.expect("ai-stream", lambda d: d["id"] == stream_id, timeout=timeout)
        data = env["data"]
    return stream_id, data, deltas


async def api_bots(srv: Server) -> dict[str, bool]:
    """``GET /api/bots`` as ``{name: enabled}``."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        body = (await http.get(f"{srv.http}/api/bots")).json()
    assert body["provider"] == "openai"
    return {b["name"]: b["enabled"] for b in body["bots"]}


async def bot_chat(client: WsClient | SseClient, timeout: float = 5.0) -> dict[str, Any]:
    env = await client.expect("chat", lambda d: d.get("kind") == "bot", timeout=timeout)
    return dict(env["data"])


def by_bot(replies: dict[str, Script]) -> Callable[[FakeRequest], Script]:
    return lambda request: replies.get(bot_of(request), Script(chunks=["(no script)"]))


# ------------------------------------------------------------------- replies


@aio
async def test_a_mention_streams_a_reply_then_one_durable_chat(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.respond = lambda request: Script(chunks=["Hi ", "Ada", ", all ", "good!"])
    ada = await join(srv, "Ada")
    bob = await join(srv, "Bob", "sse")
    assert (await ada.chat("hello @Sol, how are you?")).ok
    for client in (ada, bob):
        sid, end, deltas = await stream_of(client)
        assert "".join(deltas) == "Hi Ada, all good!"
        assert end == {"id": sid, "bot": "sol", "done": True}
        chat = await bot_chat(client)
        assert chat["id"] == sid
        assert chat["text"] == "Hi Ada, all good!"
        assert (chat["kind"], chat["userId"], chat["userName"], chat["bot"]) == (
            "bot",
            "bot:sol",
            "Sol",
            "sol",
        )
        assert isinstance(chat["seq"], int) and isinstance(chat["ts"], int)
    [request] = fake.requests
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.body["stream"] is True
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["temperature"] == 0.7
    assert request.system.startswith("You are sol, replying.")
    assert request.messages[-1] == {"role": "user", "content": "Ada: hello @Sol, how are you?"}


@aio
async def test_an_alias_wakes_its_bot_and_the_model_override_is_used(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start(bots={**QUIET_BOTS, "sol": bot_yaml("sol", aliases=("sunny",), model="tiny-1b")})
    fake.respond = lambda request: Script(chunks=["here"])
    ada = await join(srv)
    assert (await ada.chat("@SUNNY are you up?")).ok
    chat = await bot_chat(ada)
    assert (chat["bot"], chat["text"]) == ("sol", "here")
    [request] = fake.requests
    assert bot_of(request) == "sol"
    assert request.model == "tiny-1b"


@aio
async def test_context_is_the_last_ten_chat_messages_with_names(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.respond = lambda request: Script(chunks=["noted"])
    ada = await join(srv, "Ada")
    bob = await join(srv, "Bob")
    for i in range(12):
        assert (await (ada if i % 2 else bob).chat(f"m{i}")).ok
    assert (await ada.chat("@pip sum it up")).ok
    await bot_chat(ada)
    assert (await bob.chat("@noor and you?")).ok
    await bot_chat(ada)
    first, second = fake.requests
    expected = [f"{'Ada' if i % 2 else 'Bob'}: m{i}" for i in range(3, 12)] + [
        "Ada: @pip sum it up"
    ]
    assert [m["content"] for m in first.messages[1:]] == expected
    assert all(m["role"] == "user" for m in first.messages[1:])
    # the bot's own reply is in the context too, as the other bots see it
    assert [m["content"] for m in second.messages[-3:]] == [
        "Ada: @pip sum it up",
        "Pip: noted",
        "Bob: @noor and you?",
    ]
    assert len(second.messages) == 11


@pytest.mark.parametrize("transport", ["ws", "sse"])
@aio
async def test_ai_request_answers_with_the_stream_id_then_streams(
    start: Callable[..., Server], fake: FakeOpenAI, transport: str
) -> None:
    srv = start()
    fake.respond = lambda request: Script(chunks=["four", "!"])
    ada = await join(srv, "Ada", transport)
    reply = await ada.request("ai-request", {"prompt": "what is 2+2?", "bot": "pip"})
    assert reply.ok, reply
    assert reply.data["bot"] == "pip" and reply.data["ref"]
    sid, end, deltas = await stream_of(ada, reply.data["id"])
    assert end.get("done") is True and "".join(deltas) == "four!"
    chat = await bot_chat(ada)
    assert (chat["id"], chat["text"]) == (sid, "four!")
    [request] = fake.requests
    assert request.messages[-1] == {"role": "user", "content": "Ada (to you): what is 2+2?"}


@aio
async def test_ai_request_without_a_bot_goes_to_the_first_enabled_one(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.respond = lambda request: Script(chunks=["me"])
    ada = await join(srv)
    assert (await ada.request("bot-toggle", {"bot": "noor", "enabled": False})).ok
    reply = await ada.request("ai-request", {"prompt": "anyone?"})
    assert reply.ok and reply.data["bot"] == "pip", reply  # noor.yaml sorts first, but is off


@aio
async def test_a_disabled_bot_stays_silent(start: Callable[..., Server], fake: FakeOpenAI) -> None:
    srv = start()
    fake.respond = by_bot({"sol": Script(chunks=["sol here"]), "pip": Script(chunks=["pip!"])})
    ada = await join(srv)
    assert (await ada.request("bot-toggle", {"bot": "pip", "enabled": False})).ok
    assert (await ada.chat("@pip are you there?")).ok
    refused = await ada.request("ai-request", {"prompt": "hello?", "bot": "pip"})
    assert refused.code == "ai_unavailable", refused
    assert (await ada.chat("@sol are you?")).ok
    chat = await bot_chat(ada)
    assert chat["bot"] == "sol"
    assert [bot_of(r) for r in fake.requests] == ["sol"]
    assert not ada.seen("ai-stream", lambda d: d["bot"] == "pip")
    assert await api_bots(srv) == {"noor": True, "pip": False, "sol": True}


@aio
async def test_bot_to_bot_chain_stops_after_four(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.respond = by_bot(
        {
            "sol": Script(chunks=["@pip ", "your turn"]),
            "pip": Script(chunks=["@sol ", "no, yours"]),
            "noor": Script(chunks=["enough, both of you"]),
        }
    )
    ada = await join(srv)
    assert (await ada.chat("@sol start")).ok
    speakers = [(await bot_chat(ada))["bot"] for _ in range(5)]
    assert speakers == ["sol", "pip", "sol", "pip", "sol"]  # 1 answer + 4 in the chain
    # A user message resets the chain; what comes next is noor, not a sixth link.
    assert (await ada.chat("@noor stop them")).ok
    assert (await bot_chat(ada))["bot"] == "noor"
    assert [bot_of(r) for r in fake.requests] == ["sol", "pip", "sol", "pip", "sol", "noor"]


@aio
async def test_interjections_follow_shyness_never_twice_in_a_row(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    bots = {"chatty": bot_yaml("chatty", shyness=1.0), "sol": bot_yaml("sol")}
    srv = start(bots=bots, AI_INTERJECT_GAP="0")  # (the gap has its own test)
    fake.respond = lambda request: Script(chunks=["*nods*"])
    ada = await join(srv)
    for text in ("first thought", "second thought", "third thought"):
        assert (await ada.chat(text)).ok
    first = await bot_chat(ada)
    second = await bot_chat(ada)
    assert first["bot"] == second["bot"] == "chatty"
    # (the two requests race to the fake, so their order there is not the chat's)
    assert sorted(r.last for r in fake.requests) == ["Ada: first thought", "Ada: third thought"]
    assert fake.requests[0].system.startswith("You are chatty, interjecting.")
    assert fake.requests[0].body["temperature"] == 0.9


# ------------------------------------------------------------ one at a time


@aio
async def test_two_bots_think_at_once_but_stream_one_at_a_time(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.respond = by_bot(
        {
            "pip": Script(chunks=[f"p{i} " for i in range(6)], delay=0.08),
            "sol": Script(chunks=[f"s{i} " for i in range(6)], delay=0.02),
        }
    )
    ada = await join(srv)
    obs = await join(srv, "Obs", "sse")
    assert (await ada.chat("@pip and @sol: both of you, please")).ok
    for client in (ada, obs):
        first = await bot_chat(client)
        second = await bot_chat(client)
        assert (first["bot"], second["bot"]) == ("pip", "sol")  # in mention order
        assert first["text"] == "p0 p1 p2 p3 p4 p5"
        assert second["text"] == "s0 s1 s2 s3 s4 s5"
        events = [
            (e["type"], e["data"]["id"])
            for e in client.received
            if e["type"] == "ai-stream" or (e["type"] == "chat" and e["data"]["kind"] == "bot")
        ]
        ids = [sid for _, sid in events]
        # every pip event (and its chat) before any sol event: no interleaving
        assert ids == [first["id"]] * ids.count(first["id"]) + [second["id"]] * ids.count(
            second["id"]
        )
        assert events[-1] == ("chat", second["id"])
    pip_request, sol_request = sorted(fake.requests, key=lambda r: bot_of(r))
    assert pip_request.ended is not None
    assert sol_request.started < pip_request.ended  # sol was thinking while pip spoke


# -------------------------------------------------------------- cancellation


@aio
async def test_disabling_a_bot_cancels_its_reply_upstream(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.plan.append(Script("stall", chunks=["let me think"]))
    ada = await join(srv)
    assert (await ada.chat("@sol think hard")).ok
    first = await ada.expect("ai-stream", lambda d: "delta" in d)
    sid = first["data"]["id"]
    assert (await ada.request("bot-toggle", {"bot": "sol", "enabled": False})).ok
    _, end, _ = await stream_of(ada, sid)
    assert end["error"] == "Sol was turned off"
    await fake.wait(lambda f: f.requests[0].closed, 5, "closed by the server")
    # the chat goes on, and the bot answers again once enabled
    assert (await ada.request("bot-toggle", {"bot": "sol", "enabled": True})).ok
    fake.respond = lambda request: Script(chunks=["back"])
    assert (await ada.chat("@sol again")).ok
    chat = await bot_chat(ada)
    assert (chat["bot"], chat["text"]) == ("sol", "back")
    assert not ada.seen("chat", lambda d: d.get("id") == sid)


@aio
async def test_clearing_the_chat_cancels_every_reply_upstream(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.respond = lambda request: Script(chunks=[f"w{i} " for i in range(200)], delay=0.05)
    ada = await join(srv)
    assert (await ada.chat("@sol and @pip talk a lot")).ok
    first = await ada.expect("ai-stream", lambda d: "delta" in d)
    await fake.wait_requests(2)
    assert (await ada.request("clear", {})).ok
    await ada.expect("clear")
    ends = [await stream_of(ada, sid) for sid in (first["data"]["id"], None)]
    assert [end["error"] for _, end, _ in ends] == ["the chat was cleared"] * 2
    await fake.wait(lambda f: all(r.closed for r in f.requests), 5, "all closed by the server")
    assert not ada.seen("chat", lambda d: d.get("kind") == "bot")


@aio
async def test_shutdown_closes_the_upstream_request(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start()
    fake.plan.append(Script("stall", chunks=["hmm"]))
    ada = await join(srv)
    assert (await ada.chat("@noor careful now")).ok
    await ada.expect("ai-stream", lambda d: "delta" in d)
    await ada.close()
    assert srv.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    await fake.wait(lambda f: f.requests[0].closed, 5, "closed by the server")


# ------------------------------------------------------------------ failures


@pytest.mark.parametrize("transport", ["ws", "sse"])
@aio
async def test_a_stalled_model_times_out(
    start: Callable[..., Server], fake: FakeOpenAI, transport: str
) -> None:
    srv = start(AI_TIMEOUT="1", AI_RETRIES="0")
    fake.respond = lambda request: Script("stall", chunks=[])
    ada = await join(srv, "Ada", transport)
    began = time.monotonic()
    reply = await ada.request("ai-request", {"prompt": "hello?", "bot": "sol"})
    assert reply.ok, reply
    _, end, deltas = await stream_of(ada, reply.data["id"])
    assert deltas == []
    assert end["error"] == "the model did not answer within 1 s"
    error = await ada.expect("error", lambda d: d.get("ref") == reply.data["ref"])
    assert error["data"]["code"] == "ai_unavailable"
    assert 0.9 < time.monotonic() - began < 4
    await fake.wait(lambda f: f.requests[0].closed, 5, "closed by the server")
    assert (await ada.chat("the chat goes on")).ok


@aio
async def test_a_500_is_retried_a_bounded_number_of_times(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start(AI_RETRIES="2")
    fake.respond = lambda request: Script("500")
    ada = await join(srv)
    reply = await ada.request("ai-request", {"prompt": "hello?", "bot": "noor"})
    assert reply.ok, reply
    _, end, _ = await stream_of(ada, reply.data["id"])
    assert end["error"].startswith("the model server answered 500: the fake is down")
    error = await ada.expect("error", lambda d: d.get("ref") == reply.data["ref"])
    assert error["data"]["code"] == "ai_unavailable"
    assert "Noor could not answer" in error["data"]["message"]
    assert len(fake.requests) == 3  # the first try and two retries
    # a 500 followed by a good answer is retried into a normal reply
    fake.plan.append(Script("500"))
    fake.respond = lambda request: Script(chunks=["fine now"])
    assert (await ada.chat("@noor try again")).ok
    chat = await bot_chat(ada)
    assert chat["text"] == "fine now"
    assert len(fake.requests) == 5


@aio
async def test_a_mid_stream_drop_ends_the_stream_with_an_error(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start(AI_RETRIES="3")
    fake.plan.append(Script("drop", chunks=["half ", "a "]))
    ada = await join(srv)
    obs = await join(srv, "Obs", "sse")
    assert (await ada.chat("@pip tell me a long story")).ok
    for client in (ada, obs):
        _, end, deltas = await stream_of(client)
        assert "".join(deltas) == "half a "
        assert end["error"] == "the model's stream broke off"
    assert len(fake.requests) == 1  # text went out already: no retry
    fake.respond = lambda request: Script(chunks=["whole story"])
    assert (await ada.chat("@pip again")).ok
    chat = await bot_chat(ada)
    assert chat["text"] == "whole story"
    assert not ada.seen("chat", lambda d: d.get("kind") == "bot" and "half" in d["text"])


# ------------------------------------------------------- restart and pushes


@aio
async def test_context_and_enable_state_survive_a_restart(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start(BACKEND="sqlite")
    fake.respond = lambda request: Script(chunks=["ok"])
    ada = await join(srv)
    assert (await ada.chat("remember the blue door")).ok
    assert (await ada.request("bot-toggle", {"bot": "pip", "enabled": False})).ok
    await ada.close()
    srv.restart()
    assert (await api_bots(srv))["pip"] is False
    ada = await join(srv)
    assert (await ada.chat("@sol what did I say?")).ok
    await bot_chat(ada)
    contents = [m["content"] for m in fake.requests[-1].messages]
    assert contents[-2:] == ["Ada: remember the blue door", "Ada: @sol what did I say?"]


@aio
async def test_new_messages_are_pushed_to_ntfy(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    srv = start(NTFY_URL=f"{fake.base}/push/", NTFY_TOPIC="lastra", NTFY_TIMEOUT="2")
    fake.respond = lambda request: Script(chunks=["pong"])
    ada = await join(srv, "Ada")
    assert (await ada.chat("@sol ping")).ok
    await bot_chat(ada)
    await fake.wait(lambda f: len(f.posts) >= 2, 5, "two pushes")
    user_push, bot_push = sorted(fake.posts, key=lambda p: p.body != b"@sol ping")
    assert user_push.path == "/push/lastra"
    assert user_push.body == b"@sol ping"
    assert user_push.headers["title"] == "Ada in Lastra Chat"
    assert bot_push.body == b"pong"
    assert bot_push.headers["title"] == "Sol in Lastra Chat"


@aio
async def test_a_fast_model_is_coalesced_to_ten_deltas_a_second(
    start: Callable[..., Server], fake: FakeOpenAI
) -> None:
    """100 tokens at ~200/s from the real openai client arrive in a handful of deltas."""
    srv = start()
    tokens = [f"t{i} " for i in range(100)]
    fake.respond = lambda request: Script(chunks=tokens, delay=0.005)
    ada = await join(srv, "Ada")
    bob = await join(srv, "Bob", "sse")
    assert (await ada.chat("@sol count for me")).ok
    [request] = await fake.wait_requests(1)
    for client in (ada, bob):
        _, end, deltas = await stream_of(client)
        assert end.get("done") is True
        assert "".join(deltas) == "".join(tokens)
        assert (await bot_chat(client))["text"] == "".join(tokens).strip()
    await fake.wait(lambda f: request.ended is not None)
    seconds = (request.ended or 0) - request.started
    assert len(deltas) <= seconds / 0.1 + 2, (len(deltas), seconds)
    assert len(deltas) < 20
