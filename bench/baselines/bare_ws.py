"""Bare ``websockets`` broadcast server: the practical limit of this stack.

First frame ``auth`` → ``ready``; every ``chat`` frame becomes Lastra's chat
envelope, encoded once and pushed to every connection with
``websockets.broadcast`` (synchronous, no await per recipient).
"""

from __future__ import annotations

import asyncio
import signal

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from .common import Room, args, identity

ROOM = Room()
CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    try:
        first = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        user_id, user_name = identity(first["data"]["token"])
    except (TimeoutError, ConnectionClosed, ValueError, KeyError, TypeError):
        await ws.close(4401)
        return
    broadcast([ws], ROOM.ready(user_id, user_name), text=True)
    CLIENTS.add(ws)
    try:
        async for raw in ws:
            try:
                msg = orjson.loads(raw)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("type") == "chat":
                env = ROOM.chat(user_id, user_name, msg.get("data"))
                broadcast(CLIENTS, orjson.dumps(env), text=True)
    except ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


async def main() -> None:
    opts = args()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler, opts.host, opts.port, ping_interval=None, max_size=65536, backlog=2048
    ):
        await stop


if __name__ == "__main__":
    uvloop.run(main())
