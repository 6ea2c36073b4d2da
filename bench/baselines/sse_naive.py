"""Naive sse-starlette broadcast: the legacy design.

Each stream owns a bounded ``asyncio.Queue``; ``POST /chat`` builds the
envelope once and then ``await queue.put(event)`` for every client in turn.
sse-starlette frames every event separately (``\\r\\n`` line endings, its
defaults). A client that stops reading fills its queue and then blocks every
later POST: that is what the stalled-client test shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from .common import Room, args, identity, run_uvicorn

QUEUE_MAX = 256
ROOM = Room()
QUEUES: set[asyncio.Queue[ServerSentEvent]] = set()
app = FastAPI()


def _user(request: Request) -> tuple[str, str]:
    auth = request.headers.get("authorization", "")
    return identity(auth.removeprefix("Bearer ").strip())


@app.get("/stream")
async def stream(request: Request) -> EventSourceResponse:
    user_id, user_name = _user(request)
    queue: asyncio.Queue[ServerSentEvent] = asyncio.Queue(maxsize=QUEUE_MAX)

    async def events() -> AsyncIterator[ServerSentEvent]:
        QUEUES.add(queue)
        try:
            yield ServerSentEvent(data=ROOM.ready(user_id, user_name).decode(), event="ready")
            while True:
                yield await queue.get()
        finally:
            QUEUES.discard(queue)

    return EventSourceResponse(events(), ping=15)


@app.post("/chat")
async def chat(request: Request) -> JSONResponse:
    user_id, user_name = _user(request)
    env = ROOM.chat(user_id, user_name, orjson.loads(await request.body()))
    event = ServerSentEvent(data=orjson.dumps(env).decode(), event="chat", id=str(env["seq"]))
    for queue in list(QUEUES):
        await queue.put(event)
    data = env["data"]
    return JSONResponse({"clientId": data.get("clientId"), "id": data["id"], "seq": env["seq"]})


if __name__ == "__main__":
    opts = args()
    run_uvicorn(app, opts.host, opts.port)
