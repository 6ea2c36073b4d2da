"""FastAPI WebSocket broadcast with the naive awaited loop.

``for c in clients: await c.send_text(text)`` inside the sender's handler: the
message is encoded once, but one client whose socket stops draining blocks the
whole fan-out (the design Lastra must beat on the stalled-client test).
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from .common import Room, args, identity, run_uvicorn

ROOM = Room()
CLIENTS: dict[int, WebSocket] = {}
app = FastAPI()


@app.websocket("/ws")
async def chat_ws(ws: WebSocket) -> None:
    await ws.accept()
    try:
        first = orjson.loads(await ws.receive_text())
        user_id, user_name = identity(first["data"]["token"])
    except (ValueError, KeyError, TypeError, WebSocketDisconnect):
        await ws.close(4401)
        return
    await ws.send_text(ROOM.ready(user_id, user_name).decode())
    CLIENTS[id(ws)] = ws
    try:
        while True:
            raw = await ws.receive_text()
            try:
                msg = orjson.loads(raw)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("type") == "chat":
                text = orjson.dumps(ROOM.chat(user_id, user_name, msg.get("data"))).decode()
                for key, client in list(CLIENTS.items()):
                    try:
                        await client.send_text(text)
                    except Exception:
                        CLIENTS.pop(key, None)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        CLIENTS.pop(id(ws), None)


if __name__ == "__main__":
    opts = args()
    run_uvicorn(app, opts.host, opts.port)
