"""The floor of uvicorn itself: a raw ASGI WebSocket app that only greets and reads.

Not a broadcast server (it sends nothing after ``ready``): ``bench.memprobe``
uses it to show how much of the per-connection memory is uvicorn's own
(protocol object, ASGI task, scope, receive queue), before any app code.
"""

from __future__ import annotations

from typing import Any

import orjson

from .common import Room, args, identity, run_uvicorn

ROOM = Room()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    first = orjson.loads((await receive())["text"])
    user_id, user_name = identity(first["data"]["token"])
    await send({"type": "websocket.send", "text": ROOM.ready(user_id, user_name).decode()})
    while (await receive())["type"] != "websocket.disconnect":
        pass


if __name__ == "__main__":
    opts = args()
    run_uvicorn(app, opts.host, opts.port)
