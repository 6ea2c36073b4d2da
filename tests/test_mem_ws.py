"""What an idle greeted WebSocket keeps on the server, checked where it can be seen.

``bench.memprobe`` measures the footprint (KB per idle connection, issue 18's
bound is 14); this module pins down the cuts behind that figure, so that a
refactor or a uvicorn/websockets upgrade that undoes one fails here by name
instead of as a few hundred bytes lost in a benchmark's noise:

- uvicorn's protocol keeps its state in slots (CPython 3.11 keeps at most 29
  attributes inline; past that every instance carries a ~1.6 KB dict);
- no copy of the handshake's request headers outlives the handshake (websockets'
  parser keeps the request, the ASGI scope keeps its header list, for hours);
- the handler's await chain for an idle client is a few frames, not one per
  helper that ran during the handshake.

The server runs in this process (so its objects can be inspected) with the
protocols ``python -m app`` installs; the client is a raw socket, so that no
client-side copy of the headers is mistaken for a server-side one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from support.clients import aio, async_http, uniq
from websockets.datastructures import Headers

from app.__main__ import protocols
from app.main import create_app
from app.settings import Settings
from app.transports.uvicorn_ws import LastraWebSocketProtocol

PROBE = "x-lastra-probe"  # a request header only this test's handshake carries


@contextlib.asynccontextmanager
async def served(tmp_path: Path) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    settings = Settings(backend="memory", secret="s" * 32, data_dir=tmp_path, log_level="warning")
    # listening before the server starts: a client's connect waits in the backlog until
    # uvicorn accepts, which it does only after the app's startup
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings),
        ws_ping_interval=None,
        proxy_headers=False,  # as python -m app without LASTRA_FORWARDED_ALLOW_IPS
        log_config=None,
        lifespan="on",
        **protocols(settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield server, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: (opcode, payload)."""
    b0, b1 = await reader.readexactly(2)
    size = b1 & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(size)


def text_frame(obj: dict[str, Any]) -> bytes:
    """A masked client text frame."""
    payload = orjson.dumps(obj)
    mask = os.urandom(4)
    head = bytes([0x81])
    size = len(payload)
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def until(reader: asyncio.StreamReader, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 0x1 and (env := orjson.loads(payload))["type"] == kind:
                return dict(env)


async def greeted(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /api/chat.ws HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{PROBE}: kept-by-nobody\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(text_frame({"type": "auth", "data": {"token": token}}))
    await until(reader, "bot-state")  # the greeting's last frame
    return reader, writer


def _handler_chain(proto: LastraWebSocketProtocol) -> list[str]:
    """The names of the coroutines an idle client's ASGI task is suspended in."""
    tasks = [t for t in proto.tasks if not t.done()]
    assert len(tasks) == 1
    names: list[str] = []
    awaited: Any = tasks[0].get_coro()
    while awaited is not None and hasattr(awaited, "cr_code"):
        names.append(awaited.cr_code.co_name)
        awaited = awaited.cr_await
    return names


@aio
async def test_an_idle_greeted_websocket_keeps_no_handshake_and_no_instance_dict(
    tmp_path: Path,
) -> None:
    async with served(tmp_path) as (server, port):
        async with async_http(f"http://127.0.0.1:{port}") as http:
            body = (await http.post("/api/session", json={"userName": uniq()})).json()
        reader, writer = await greeted(port, body["token"])
        try:
            live = server.server_state.connections
            ws = [p for p in live if isinstance(p, LastraWebSocketProtocol)]
            assert len(ws) == 1
            proto = ws[0]
            assert vars(proto) == {}, (
                "uvicorn's protocol grew attributes outside our slots: add them to "
                "app.transports.uvicorn_ws.UVICORN_STATE"
            )
            assert proto.request is None and proto.response is None

            gc.collect()
            headers = [o for o in gc.get_objects() if isinstance(o, Headers) and PROBE in o]
            lists = [
                o
                for o in gc.get_objects()
                if isinstance(o, list)
                and any(isinstance(h, tuple) and h[:1] == (PROBE.encode(),) for h in o)
            ]
            assert headers == [] and lists == [], "the handshake's headers outlived it"

            chain = _handler_chain(proto)
            assert chain == ["run_asgi", "__call__", "serve", "_session_direct", "_read", "receive"]

            # and the connection still works through the slimmer receive
            writer.write(text_frame({"type": "ping", "data": {"t": 7}}))
            assert (await until(reader, "pong"))["data"] == {"t": 7}
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
