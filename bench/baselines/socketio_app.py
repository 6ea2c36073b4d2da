"""python-socketio (ASGI) under uvicorn: what users would pick instead.

Clients connect with the WebSocket transport directly, authenticate with the
Socket.IO ``auth`` payload, and ``emit("chat", {...})``; the server emits the
same Lastra chat envelope to everyone with ``sio.emit`` (library defaults).
"""

from __future__ import annotations

from typing import Any

import socketio

from .common import Room, args, identity, run_uvicorn

ROOM = Room()
USERS: dict[str, tuple[str, str]] = {}
sio = socketio.AsyncServer(async_mode="asgi")
app = socketio.ASGIApp(sio)


@sio.event
async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    token = auth.get("token", "") if isinstance(auth, dict) else ""
    USERS[sid] = identity(token)


@sio.event
async def disconnect(sid: str, *args: Any) -> None:
    USERS.pop(sid, None)


@sio.on("chat")
async def chat(sid: str, data: Any) -> None:
    user_id, user_name = USERS.get(sid, ("anon", "anon"))
    await sio.emit("chat", ROOM.chat(user_id, user_name, data))


if __name__ == "__main__":
    opts = args()
    run_uvicorn(app, opts.host, opts.port)
