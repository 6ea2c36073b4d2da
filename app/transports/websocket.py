"""``GET /api/chat.ws``: the WebSocket adapter (PROTOCOL §3).

It only moves frames: the first must be ``auth`` (else 4401), the rollout flag
may refuse the user (4403), then every text frame goes to the hub.

It is a plain ASGI handler that the app calls before FastAPI's routing
(:func:`is_chat_ws`): a connection lives for hours, and every layer it passes
through (middleware frames, the dependency exit stack, Starlette's
``WebSocket``) is memory held per client for all that time.

Writing takes one of two paths. Under ``python -m app`` the uvicorn protocol
offers direct writes (:mod:`app.transports.flush`): its ``Flusher`` writes
every connection that has frames queued once per event-loop pass, as
pre-framed bytes, with no task per connection. Elsewhere a writer task per
connection drains the queue through ASGI ``websocket.send``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import cast

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from app.core import ClientError, CloseCode, parse
from app.core.messages import Auth
from app.hub import Connection, Session
from app.metrics import Metrics
from app.wire import decode

from .deps import Services, origin_allowed
from .flush import DirectSocket, offered

__all__ = ["PATH", "is_chat_ws", "serve"]

log = logging.getLogger("lastra.ws")

PATH = "/api/chat.ws"


def is_chat_ws(scope: Scope) -> bool:
    if scope["type"] != "websocket":
        return False
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return (path[len(root) :] if root and path.startswith(root) else path) == PATH


async def _close(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code, "reason": reason})


async def _first_auth(receive: Receive, timeout: float, max_bytes: int) -> Auth | int:
    """The client's ``auth`` frame, or the close code to answer with."""
    try:
        async with asyncio.timeout(timeout):
            message = await receive()
    except TimeoutError:
        return CloseCode.UNAUTHENTICATED
    if message["type"] == "websocket.disconnect":
        return CloseCode.NORMAL
    raw = message.get("text") or message.get("bytes") or ""
    if len(raw) > max_bytes:
        return CloseCode.TOO_BIG
    try:
        obj = decode(raw)
        msg = parse(obj)
    except ValueError:
        return CloseCode.UNAUTHENTICATED
    except ClientError:  # a token that came with a bad resume point is not an auth problem
        data = obj.get("data") if isinstance(obj, dict) and obj.get("type") == "auth" else None
        token = data.get("token") if isinstance(data, dict) else None
        return CloseCode.INVALID if isinstance(token, str) and token else CloseCode.UNAUTHENTICATED
    return msg if isinstance(msg, Auth) else CloseCode.UNAUTHENTICATED


async def serve(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """One WebSocket client, from the handshake to the end. Never raises.

    The handshake and the auth run in their own coroutine (:func:`_admit`), gone
    once the client is in: an idle client keeps only this frame, its session's
    and the reader's, for hours.
    """
    try:
        admitted = await _admit(services, scope, receive, send)
        if admitted is None:
            return
        conn, auth = admitted
        direct = offered(scope)
        if direct is not None:  # a WebSocket scope's offer is a DirectSocket
            await _session_direct(services, conn, cast(DirectSocket, direct), auth, receive)
        else:
            await _session_asgi(services, conn, auth, receive, send)
    except Exception:  # a bug must cost one connection, not a 500 log storm
        log.exception("WebSocket handler failed")
        services.hub.metrics.error("internal", "ws")
        await _close(send, CloseCode.INTERNAL, "internal")


async def _admit(
    services: Services, scope: Scope, receive: Receive, send: Send
) -> tuple[Connection, Auth] | None:
    """Accept, check the auth frame, the user's transport and the caps; None if refused."""
    settings = services.settings
    hub = services.hub
    if (await receive())["type"] != "websocket.connect":
        return None
    if not origin_allowed(services, HTTPConnection(scope)):
        hub.metrics.refused.labels("origin").inc()
        await _close(send, CloseCode.FORBIDDEN, "origin-not-allowed")  # → HTTP 403
        return None
    # nothing reads the handshake's headers after the origin check, and the scope lives
    # as long as the connection: about 0.7 KB per client (uvicorn's log lines read
    # ``client``, ``path`` and ``query_string``, which stay)
    scope["headers"] = []
    await send({"type": "websocket.accept"})
    auth = await _first_auth(receive, settings.auth_timeout, settings.max_message_bytes)
    if isinstance(auth, int):
        reasons: dict[int, str] = {
            CloseCode.TOO_BIG: "too-large",
            CloseCode.UNAUTHENTICATED: "auth-required",
            CloseCode.INVALID: "invalid-auth",
        }
        reason = reasons.get(auth, "")
        if auth == CloseCode.UNAUTHENTICATED:
            hub.metrics.error("not_authenticated", "ws")
        await _close(send, auth, reason)
        return None
    identity = services.tokens.verify(auth.token)
    if identity is None:
        hub.metrics.error("not_authenticated", "ws")
        hub.metrics.refused.labels("bad-token").inc()
        await _close(send, CloseCode.UNAUTHENTICATED, "bad-token")
        return None
    if services.assignment(identity.user_id).transport != "ws":
        hub.metrics.refused.labels("transport-disabled").inc()
        await _close(send, CloseCode.FORBIDDEN, "transport-disabled")
        return None
    conn = Connection(identity, "ws", settings.outbound_queue)
    client = scope.get("client")
    conn.address = str(client[0]) if client else ""
    refusal = hub.admit(conn)
    if refusal is not None:
        await _close(send, CloseCode.TRY_LATER, refusal)
        return None
    return conn, auth


async def _read(services: Services, conn: Connection, receive: Receive) -> int | None:
    """Feed the client's frames to the hub until it goes; its close code, if it closed."""
    hub = services.hub
    max_bytes = services.settings.max_message_bytes
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return int(message.get("code") or 1005)
        if conn.closing:
            continue  # our close is on its way; the rest is not read
        text = message.get("text")
        if text is None:
            hub.reject(conn, ClientError("invalid", "only text frames are accepted"))
            continue
        if len(text) > max_bytes and len(text.encode()) > max_bytes:
            conn.close(CloseCode.TOO_BIG, "too-large")
            continue
        hub.receive(conn, text)


async def _session_direct(
    services: Services,
    conn: Connection,
    proto: DirectSocket,
    auth: Auth,
    receive: Receive,
) -> None:
    flusher = services.flusher()
    flusher.link(conn, proto)
    try:
        async with Session(services.hub, conn, proto.abort, auth.last_seq, auth.epoch) as live:
            live.client_code = await _read(services, conn, receive)
    finally:
        flusher.unlink(conn)
        conn.close(CloseCode.NORMAL, "")
        if proto.open:  # e.g. cancelled at shutdown: say goodbye properly
            proto.close_now(conn.close_code, conn.close_reason)
        # a client that stopped reading never completes the closing handshake, and a
        # transport with unsent data never closes by itself: drop it after a while
        if not proto.gone and proto.unsent():
            asyncio.get_running_loop().call_later(conn.KILL_AFTER, proto.abort)


async def _session_asgi(
    services: Services, conn: Connection, auth: Auth, receive: Receive, send: Send
) -> None:
    writer = asyncio.create_task(_writer(send, conn, services.hub.metrics))
    handler = asyncio.current_task()
    assert handler is not None
    live = Session(services.hub, conn, handler.cancel, auth.last_seq, auth.epoch, swallow_kill=True)
    try:
        async with live:
            live.client_code = await _read(services, conn, receive)
    finally:
        conn.close(CloseCode.NORMAL, "")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 5)
        writer.cancel()


async def _writer(send: Send, conn: Connection, metrics: Metrics) -> None:
    """Drain the queue into ASGI sends; close with the connection's code at the end."""
    counts = metrics.messages_out
    latency = metrics.latency.labels("ws")
    try:
        while (batch := await conn.next_batch()) is not None:
            for frame in batch:
                await send({"type": "websocket.send", "text": frame.text})
                counts[(frame.type, "ws")] += 1
            latency.observe(time.monotonic() - batch[0].born)
    except Exception:  # the peer went away mid-write: the reader sees the disconnect
        conn.close(1006, "")
        return
    await _close(send, conn.close_code, conn.close_reason)
