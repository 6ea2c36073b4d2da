"""Slow consumers and failing bots, as ``/metrics`` shows them (issue 9).

The server has a tiny outbound queue (``OUTBOUND_QUEUE=16``, the minimum) and an OpenAI
provider pointed at a port where nothing listens, so every bot reply fails at once.

A slow consumer here is a real WebSocket whose TCP receive buffer is 4 KiB and that stops
reading: another user floods the room with 12 KB chat messages over POST until the server's
writer to it stalls, and its queue overflows.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from support.clients import (
    Session,
    SseClient,
    WsClient,
    aio,
    asession,
    async_http,
    uniq,
)
from support.server import Server, free_port
from test_ops_support import ascrape, await_metric, delta, value
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

BIG_TEXT = "€" * 4000  # 4000 characters, 12 KB of UTF-8 on the wire


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "OUTBOUND_QUEUE": "16",
    "RATE_CHAT": "100000",
    "RATE_CHAT_BURST": "100000",
    "AI_PROVIDER": "openai",
    "OPENAI_API_KEY": "sk-test-not-a-key",
    "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
    "AI_RETRIES": "0",
    "AI_TIMEOUT": "3",
}


async def stalled_reader(srv: Server, user: Session) -> ClientConnection:
    """An authenticated WebSocket that reads nothing more once its tiny buffers are full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.setblocking(False)
    ws = await connect(
        srv.ws,
        sock=sock,
        proxy=None,
        max_queue=1,  # the client library stops reading the socket after one message
        ping_interval=None,
        compression=None,
        max_size=None,
        close_timeout=2,
    )
    await ws.send(json.dumps({"type": "auth", "data": {"token": user.token}}))
    return ws


async def flood_until_stalled(srv: Server, sender: Session) -> int:
    """POST big chats, one at a time, until the server stops delivering them, then 40 more.

    One at a time, so that every chat is its own broadcast and a reading client keeps up
    (a burst committed in one batch could overflow a 16-frame queue by itself). The writer
    to the silent client stalls once the kernel buffers are full; after that every chat
    queues, and 40 more than the 16-frame queue must overflow it. Returns how many chats
    were posted.
    """
    posted = 0
    last_out, still = -1.0, 0
    async with async_http(srv.http) as http:

        async def post_one() -> None:
            nonlocal posted
            body = {"text": BIG_TEXT, "clientId": uniq("c")}
            resp = await http.post("/api/chat-message", json=body, headers=sender.bearer)
            assert resp.status_code == 200, resp.text
            posted += 1

        while posted < 5000:  # 60 MB: far beyond any socket buffer
            for _ in range(25):
                await post_one()
            snap = await ascrape(srv)
            out = value(snap, "lastra_messages_out_total", type="chat", transport="ws")
            still = still + 1 if out == last_out else 0
            last_out = out
            if still >= 2:  # 50 chats and not one more written to any WebSocket
                for _ in range(40):
                    await post_one()
                return posted
    raise AssertionError(f"the server never stalled writing to a silent client ({posted} posted)")


@aio
async def test_a_client_that_stops_reading_overflows_and_is_counted(srv: Server) -> None:
    before = await ascrape(srv)
    slow = await stalled_reader(srv, await asession(srv.http))
    await await_metric(
        srv,
        lambda s: delta(before, s, "lastra_connections_opened_total", transport="ws") == 1,
        "the slow client attached",
    )
    await flood_until_stalled(srv, await asession(srv.http))

    # It reads again: it drains what was buffered, then the server's close.
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(slow.recv(), 10)
    assert slow.close_code in (4409, 1006), (slow.close_code, slow.close_reason)
    after = await await_metric(
        srv,
        lambda s: delta(before, s, "lastra_outbound_overflow_total", transport="ws") == 1,
        "the overflow counted",
    )
    assert delta(before, after, "lastra_closes_total", code="4409", transport="ws") == 1
    assert value(after, "lastra_connections_open", transport="ws") == value(
        before, "lastra_connections_open", transport="ws"
    )
    await slow.close()


@aio
async def test_a_client_that_never_reads_again_is_cut_off(srv: Server) -> None:
    """Its close frame can never be written: the server lets go of it anyway.

    The server gives a stalled 4409 ``Connection.ABORT_AFTER`` (5 s) to read its close,
    then detaches it: it leaves ``connections_open`` and the overflow is counted.
    """
    before = await ascrape(srv)
    slow = await stalled_reader(srv, await asession(srv.http))
    await await_metric(
        srv,
        lambda s: delta(before, s, "lastra_connections_opened_total", transport="ws") == 1,
        "the slow client attached",
    )
    await flood_until_stalled(srv, await asession(srv.http))
    try:
        # The slow client keeps its socket open and reads nothing: the server must let go.
        await await_metric(
            srv,
            lambda s: (
                delta(before, s, "lastra_outbound_overflow_total", transport="ws") == 1
                and value(s, "lastra_connections_open", transport="ws")
                == value(before, "lastra_connections_open", transport="ws")
            ),
            "the silent slow consumer let go of and counted",
            timeout=10,
        )
    finally:
        slow.transport.abort()
        await slow.close()


# ------------------------------------------------------------------ bots


@aio
async def test_a_failing_bot_is_an_ai_unavailable_error_on_each_transport(srv: Server) -> None:
    ws = await WsClient.open(srv, await asession(srv.http))
    sse = await SseClient.open(srv, await asession(srv.http))
    bot = ws.bots["bots"][0]["name"]
    before = await ascrape(srv)
    for client in (ws, sse):
        reply = await client.request("ai-request", {"prompt": "are you there?", "bot": bot}, 10)
        if reply.ok:  # accepted with the stream id: the failure comes on the stream
            stream_id = reply.data["id"]
            await client.expect("error", lambda d: d["code"] == "ai_unavailable", timeout=10)
        else:  # or the POST waited for the provider and answers with the error itself
            assert reply.code == "ai_unavailable" and reply.status in (None, 503), reply
            stream_id = None
        await client.expect(
            "ai-stream",
            lambda d, i=stream_id: "error" in d and i in (None, d["id"]),
            timeout=10,
        )
    after = await ascrape(srv)
    for transport in ("ws", "sse"):
        assert (
            delta(before, after, "lastra_errors_total", code="ai_unavailable", transport=transport)
            == 1
        )
    assert (await ws.chat("the chat goes on")).ok


@aio
async def test_bot_failures_are_counted(srv: Server) -> None:
    ws = await WsClient.open(srv, await asession(srv.http))
    bot = ws.bots["bots"][0]["name"]
    before = await ascrape(srv)
    assert (await ws.request("ai-request", {"prompt": "fail, please", "bot": bot}, 10)).ok
    await ws.expect("error", lambda d: d["code"] == "ai_unavailable", timeout=10)
    after = await ascrape(srv)
    assert delta(before, after, "lastra_bot_requests_total", bot=bot) == 1
    assert delta(before, after, "lastra_bot_failures_total", bot=bot) == 1
