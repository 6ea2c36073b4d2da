"""The two write paths of both adapters (app.transports.flush / uvicorn_direct).

``python -m app`` writes pre-framed bytes straight to uvicorn's transports; any
other server (here ``uvicorn app.main:app``, whose protocols do not offer the
direct extension) gets plain ASGI sends from a writer task per connection (SSE:
a streaming response). Both must speak exactly the same protocol. ``python -m app``
declines permessage-deflate (browsers always offer it; its direct writes never
compress, so it would only cost a zlib pair per connection), and frames longer than
65,535 bytes need the 64-bit length header: both are checked here with the real
``websockets`` client, which offers deflate as browsers do.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from support.clients import (
    SseClient,
    UvicornServer,
    WsClient,
    aio,
    asession,
    free_port,
    server_env,
    uniq,
)
from support.server import Server
from websockets.asyncio.client import connect

GREETING = ["ready", "history", "presence", "bot-state"]


def greeting(client: WsClient) -> list[str]:
    types = [e["type"] for e in client.received]
    return [t for t in types if t in GREETING][:4]


@aio
async def test_plain_asgi_path_speaks_the_same_protocol(tmp_path: Path) -> None:
    srv = UvicornServer(port=free_port(), env=server_env(tmp_path), data_dir=tmp_path)
    await asyncio.to_thread(srv.start)
    try:
        ada = await WsClient.open(srv, await asession(srv.http, uniq("Ada")))
        bob = await WsClient.open(srv, await asession(srv.http, uniq("Bob")))
        assert greeting(ada) == GREETING
        cid = uniq("c")
        reply = await ada.chat("over plain ASGI", cid)
        assert reply.ok, reply
        for client in (ada, bob):
            env = await client.expect("chat", lambda d: d.get("clientId") == cid)
            assert env["seq"] == reply.data["seq"]
        await bob.expect("presence-diff")  # Ada's and Bob's joins reach Bob
        cy = await SseClient.open(srv, await asession(srv.http, uniq("Cy")))
        assert [e["type"] for e in cy.received][:4] == GREETING
        reply = await cy.chat("over a streaming response")
        assert reply.ok, reply
        for client in (ada, bob, cy):
            await client.expect("chat", lambda d: d.get("seq") == reply.data["seq"])
        await ada.send("ping", {"t": 7})
        assert (await ada.expect("pong"))["data"]["t"] == 7
        # a forged token: 4401, as on the direct path
        mallory = await WsClient.connect(srv.ws)
        await mallory.auth("not-a-token", settle=False)
        assert (await mallory.wait_closed())[0] == 4401
        await cy.close()  # (plain uvicorn waits for open streams before its lifespan ends)
        # the server stops: every WebSocket client is told to come back (1012)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        for client in (ada, bob):
            code, _ = await client.wait_closed(timeout=10)
            assert code == 1012
    finally:
        await asyncio.to_thread(srv.stop, timeout=5)


@aio
async def test_deflate_is_declined_and_long_frames_arrive_whole(
    make_server: Any,
) -> None:
    server: Server = make_server(RATE_CHAT="1000", RATE_CHAT_BURST="1000")
    writer = await WsClient.open(server, await asession(server.http, uniq("Writer")))
    texts = [f"{i:03d}" + "é" * 3990 for i in range(24)]  # ≈ 190 kB of history
    for text in texts:
        assert (await writer.chat(text)).ok
    user = await asession(server.http, uniq("Deflate"))
    async with connect(server.ws, proxy=None, max_size=None, open_timeout=5) as ws:
        extensions = ws.protocol.extensions
        assert extensions == [], "permessage-deflate offered, and declined"
        await ws.send(json.dumps({"type": "auth", "data": {"token": user.token}}))
        got: dict[str, dict[str, object]] = {}
        while "bot-state" not in got:
            env = json.loads(await asyncio.wait_for(ws.recv(), 5))
            got.setdefault(env["type"], env)
        raw = json.dumps(got["history"])
        assert len(raw.encode()) > 65_535, "the history frame needs the 64-bit length"
        history = got["history"]["data"]["messages"]  # type: ignore[index]
        assert [m["text"] for m in history][-len(texts) :] == texts
        cid = uniq("c")
        await ws.send(json.dumps({"type": "chat", "data": {"text": "hi", "clientId": cid}}))
        while True:
            env = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if env["type"] == "chat" and env["data"].get("clientId") == cid:
                break
    await writer.close()
