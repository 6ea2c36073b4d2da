"""``GET /api/chat.ws``: the WebSocket adapter (PROTOCOL §3).

It only moves frames: the first must be ``auth`` (else 4401), the rollout flag
may refuse the user (4403), then every text frame goes to the hub and a writer
task drains the connection's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.core import ClientError, parse
from app.core.messages import Auth
from app.hub import Connection
from app.metrics import Metrics

from .codec import decode
from .deps import ServicesDep, origin_allowed

__all__ = ["router"]

router = APIRouter()
log = logging.getLogger("lastra.ws")

CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TRANSPORT = 4403
CLOSE_TRY_LATER = 1013


async def _first_auth(ws: WebSocket, timeout: float, max_bytes: int) -> Auth | int:
    """The client's ``auth`` frame, or the close code to answer with."""
    try:
        message = await asyncio.wait_for(ws.receive(), timeout)
    except TimeoutError:
        return CLOSE_UNAUTHENTICATED
    if message["type"] == "websocket.disconnect":
        return 1000
    raw = message.get("text") or message.get("bytes") or ""
    if len(raw) > max_bytes:
        return CLOSE_TOO_BIG
    try:
        msg = parse(decode(raw))
    except (ValueError, ClientError):
        return CLOSE_UNAUTHENTICATED
    return msg if isinstance(msg, Auth) else CLOSE_UNAUTHENTICATED


@router.websocket("/api/chat.ws")
async def chat_ws(ws: WebSocket, services: ServicesDep) -> None:
    settings = services.settings
    if not origin_allowed(services, ws):
        services.hub.metrics.refused.labels("origin").inc()
        await ws.close(code=CLOSE_TRANSPORT, reason="origin-not-allowed")  # → HTTP 403
        return
    await ws.accept()
    auth = await _first_auth(ws, settings.auth_timeout, settings.max_message_bytes)
    if isinstance(auth, int):
        reason = {CLOSE_TOO_BIG: "too-large", CLOSE_UNAUTHENTICATED: "auth-required"}.get(auth, "")
        if auth == CLOSE_UNAUTHENTICATED:
            services.hub.metrics.error("not_authenticated", "ws")
        await _close(ws, auth, reason)
        return
    identity = services.tokens.verify(auth.token)
    if identity is None:
        services.hub.metrics.error("not_authenticated", "ws")
        services.hub.metrics.refused.labels("bad-token").inc()
        await _close(ws, CLOSE_UNAUTHENTICATED, "bad-token")
        return
    if services.rollout.assign(identity.user_id).transport != "ws":
        services.hub.metrics.refused.labels("transport-disabled").inc()
        await _close(ws, CLOSE_TRANSPORT, "transport-disabled")
        return
    hub = services.hub
    conn = Connection(identity, "ws", settings.outbound_queue)
    refusal = hub.admit(conn)
    if refusal is not None:
        await _close(ws, CLOSE_TRY_LATER, refusal)
        return

    client_code: int | None = None
    writer = asyncio.create_task(_writer(ws, conn, hub.metrics))
    handler = asyncio.current_task()

    def kill() -> None:
        writer.cancel()
        if handler is not None and not handler.done():
            handler.cancel()

    def abort() -> None:
        """The client stopped reading: its close frame is stuck. Let go of it."""
        log.info("letting go of stalled connection %s (%s)", conn.peer_id, conn.close_code)
        hub.detach(conn)
        asyncio.get_running_loop().call_later(conn.KILL_AFTER, kill)

    conn.on_abort = abort
    try:
        await hub.attach(conn, auth.last_seq, auth.epoch)
        max_bytes = settings.max_message_bytes
        while not conn.closing:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                client_code = int(message.get("code") or 1005)
                break
            text = message.get("text")
            if text is None:
                err = ClientError("invalid", "only text frames are accepted")
                hub.frame_error(conn, err)
                continue
            if len(text) > max_bytes and len(text.encode()) > max_bytes:
                conn.close(CLOSE_TOO_BIG, "too-large")
                break
            hub.frame(conn, text)
    except WebSocketDisconnect as exc:
        client_code = exc.code
    except asyncio.CancelledError:
        if conn.on_abort is None or not conn.closing:
            raise  # a real cancellation (shutdown), not our abort
    finally:
        conn.finished()
        hub.detach(conn, client_code)
        conn.close(1000, "")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 5)
        writer.cancel()


async def _writer(ws: WebSocket, conn: Connection, metrics: Metrics) -> None:
    """Drain the queue into the socket; close it with the connection's code at the end."""
    counts = metrics.messages_out
    latency = metrics.latency.labels("ws")
    try:
        while (batch := await conn.next_batch()) is not None:
            for frame in batch:
                await ws.send_text(frame.text)
                counts[(frame.type, "ws")] += 1
            latency.observe(time.monotonic() - batch[0].born)
    except Exception:  # the peer went away mid-write: the reader sees the disconnect
        conn.close(1006, "")
        return
    await _close(ws, conn.close_code, conn.close_reason)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        await ws.close(code=code, reason=reason)
