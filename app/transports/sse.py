"""The legacy adapter: ``GET /api/chat-stream`` (SSE) and the POST endpoints (PROTOCOL §3).

Same events, same JSON as the WebSocket; only the framing differs. A POST's
response body is exactly the ``ack``/``error`` data a WebSocket client would get.

The stream is also a plain ASGI handler (:func:`serve`) that the app may call
before FastAPI's routing (:func:`is_chat_stream`), as it does the WebSocket: a
stream lives for hours, and the middleware frames, the dependency exit stacks
and the ``Request`` it would otherwise pass through are memory held per client
for that long, and CPU spent on every connect. The FastAPI route stays, for a
request that may be an SSE-era tab's (``?userId=``, :mod:`.legacy`) and for an
app that does not take the shortcut.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from app.core import ClientError, parse_data
from app.core.messages import parse_ref
from app.hub import Connection, Session
from app.security import HEADERS as SECURITY_HEADERS
from app.security import secured
from app.wire import SSE_KEEPALIVE, SSE_RETRY, decode, sse_closed

from . import legacy
from .deps import (
    Services,
    ServicesDep,
    bearer,
    error_response,
    identity_of,
    origin_allowed,
    read_body,
)
from .flush import DirectStream, offered

__all__ = ["PATH", "is_chat_stream", "router", "serve"]

log = logging.getLogger("lastra")

router = APIRouter()

PATH = "/api/chat-stream"

#: POST endpoint → message type (and fixed fields).
ENDPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "/api/chat-message": ("chat", {}),
    "/api/chat-typing": ("typing", {}),
    "/api/chat-signal": ("webrtc-signal", {}),
    "/api/screen-share-signal": ("webrtc-signal", {"stream": "screen"}),
    "/api/media-state": ("media-state", {}),
    "/api/bot-toggle": ("bot-toggle", {}),
    "/api/chat-clear": ("clear", {}),
    "/api/ai-request": ("ai-request", {}),
    "/api/chat-ready": ("ready", {}),
    "/api/call-outcome": ("call-outcome", {}),
    "/api/delivery-report": ("delivery-report", {}),
    "/api/presence-page": ("presence-page", {}),
}

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

#: the direct stream's head, encoded once: what ``Response.init_headers`` makes of
#: :data:`SSE_HEADERS` and the media type; :func:`serve` adds the security headers
#: itself (there is no middleware to add them)
_HEAD = [
    *((k.lower().encode(), v.encode()) for k, v in SSE_HEADERS.items()),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]
_HEAD_SECURED = _HEAD + SECURITY_HEADERS


#: a resume point's seq: ASCII digits only (``str.isdigit`` also takes ``²``), at most 18
_SEQ = re.compile(r"[0-9]{1,18}")


def _seq(value: str | None) -> int | None:
    """A seq from a client, or None: never raises, whatever the client sent."""
    return int(value) if value is not None and _SEQ.fullmatch(value) else None


def _resume_point(request: HTTPConnection) -> tuple[int | None, str | None]:
    """``Last-Event-ID: <epoch>:<seq>`` wins over ``?lastSeq=&epoch=``; junk means none."""
    last_id = request.headers.get("last-event-id")
    if last_id and ":" in last_id:
        epoch, _, seq = last_id.rpartition(":")
        if (value := _seq(seq)) is not None:
            return value, epoch
    if not request.scope.get("query_string"):  # the usual case: nothing to parse
        return None, None
    query = request.query_params
    value = _seq(query.get("lastSeq"))
    return (value, query.get("epoch")) if value is not None else (None, None)


def is_chat_stream(scope: Scope) -> bool:
    """A ``GET`` of the stream that :func:`serve` may take before FastAPI's routing.

    A query naming ``userId`` may come from an SSE-era tab (:func:`.legacy.speaks_to`):
    that one goes through the FastAPI route, which knows the legacy wire.
    """
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == PATH and b"userId" not in scope["query_string"]


async def serve(services: Services, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /api/chat-stream`` as plain ASGI: the route's answer, with the security headers.

    What FastAPI's stack would do for this route is done here: the security
    headers on every response, and an unexpected error before the response
    starts answered 500 ``internal`` (logged); one after it propagates to the
    server, as through the stack.
    """
    try:
        response = _open(services, HTTPConnection(scope))
    except Exception as exc:
        log.error("internal error on %s", PATH, exc_info=exc)
        response = JSONResponse({"code": "internal", "message": "internal error"}, 500)
    if isinstance(response, _DirectStream):
        response.raw_headers = _HEAD_SECURED
        await response(scope, receive, send)
    else:
        await response(scope, receive, secured(send))


@router.get(PATH, response_model=None)
async def chat_stream(request: Request, services: ServicesDep) -> Response:
    """The route (see the module's docstring for when a request takes it)."""
    if services.settings.sse_enabled and legacy.speaks_to(request):  # an SSE-era tab
        return await legacy.open_stream(request, services)
    return _open(services, request)


def _open(services: Services, request: HTTPConnection) -> Response:
    """The stream's response, or the error that refuses it.

    Synchronous on purpose: nothing is awaited between admitting the connection
    and handing the response over, so the place is given back on any failure.
    """
    settings = services.settings
    if not settings.sse_enabled:
        return error_response(ClientError("forbidden", "SSE is disabled on this server"))
    token = (
        bearer(request) or request.cookies.get("lastra_token") or request.query_params.get("token")
    )
    try:
        if not origin_allowed(services, request):
            raise ClientError("forbidden", "origin not allowed")
        identity = identity_of(services, token)
    except ClientError as exc:
        services.hub.metrics.error(exc.code, "sse")
        return error_response(exc)
    conn = Connection(identity, "sse", settings.outbound_queue)
    conn.address = request.client.host if request.client else ""
    refusal = services.hub.admit(conn)
    if refusal is not None:  # counted as a refusal, not as a client error
        refused = ClientError("rate_limited", f"connection refused: {refusal}")
        return error_response(refused, {"Retry-After": "5"}, 503)
    try:  # from here until the stream runs, any failure must give the place back
        last_seq, epoch = _resume_point(request)
        link = offered(request.scope)
        if link is not None:  # a GET request's offer is a DirectStream
            return _DirectStream(services, conn, last_seq, epoch, cast(DirectStream, link))
        return _AsgiStream(services, conn, _stream(services, conn, last_seq, epoch))
    except BaseException:
        services.hub.release(conn)
        raise


class _AsgiStream(EventSourceResponse):
    """The stream under any other ASGI server: sse-starlette's ``EventSourceResponse``.

    It brings the keep-alive pings (our ``: keep-alive`` comment every
    ``sse_keepalive`` seconds), disconnect detection and the server's exit
    signal: on it, the hub closes every connection with 1012, so this stream too
    ends with its closing lines within the grace period. Our frames arrive
    pre-encoded (``ensure_bytes`` passes bytes through). The place
    :meth:`~app.hub.Hub.admit` reserved is given back however it ends: a
    generator that never started never runs its ``finally``.
    """

    def __init__(self, services: Services, conn: Connection, stream: AsyncIterator[bytes]) -> None:
        shutdown = anyio.Event()
        super().__init__(
            _until_exit(services, shutdown, stream),
            headers=SSE_HEADERS,
            ping=services.settings.sse_keepalive,
            ping_message_factory=_keepalive,
            sep="\n",
            shutdown_event=shutdown,
            shutdown_grace_period=SHUTDOWN_GRACE,
        )
        self._owner = (services.hub, conn)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, conn = self._owner
        try:
            await super().__call__(scope, receive, send)
        finally:
            hub.detach(conn)  # idempotent: gives the place back if the generator did not


#: how long a stream may take to say goodbye after the exit signal (the hub's own bound)
SHUTDOWN_GRACE = 5.0


def _keepalive() -> ServerSentEvent:
    return ServerSentEvent(comment=SSE_KEEPALIVE[2:-2].decode(), sep="\n")


async def _until_exit(
    services: Services, shutdown: anyio.Event, stream: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``stream``, and on the server's exit signal the hub's 1012 to every connection."""

    async def watch() -> None:
        await shutdown.wait()
        services.hub.begin_shutdown()  # idempotent; every stream's closing lines follow

    watcher = asyncio.create_task(watch())
    try:
        async for chunk in stream:
            yield chunk
    finally:
        watcher.cancel()


class _DirectStream(Response):
    """The event stream written by the shared flusher (``python -m app``).

    Headers and the final empty chunk go through ASGI (middleware sees them);
    everything between is written straight to the socket by
    :class:`~app.transports.flush.Flusher`, so an open stream costs no task and
    no generator, and a broadcast costs one chunk write per stream.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        services: Services,
        conn: Connection,
        last_seq: int | None,
        epoch: str | None,
        link: DirectStream,
    ) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = _HEAD  # no body: no content-length, so chunked
        self._args = (services, conn, last_seq, epoch, link)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services, conn, last_seq, epoch, link = self._args
        flusher = services.flusher()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        except BaseException:
            services.hub.release(conn)  # the client left before the stream started
            raise
        ended = link.bind()
        try:
            link.write_raw([SSE_RETRY])
            flusher.link_stream(conn, link)
            async with Session(services.hub, conn, link.abort, last_seq, epoch):
                await ended
        finally:
            flusher.unlink(conn)
            link.release()
        if link.open:  # end the response; a reader that stopped never drains it: drop it
            killer = asyncio.get_running_loop().call_later(conn.KILL_AFTER, link.abort)
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                killer.cancel()


async def _stream(
    services: Services, conn: Connection, last_seq: int | None, epoch: str | None
) -> AsyncIterator[bytes]:
    """Attach inside the generator so a client gone before the first byte never leaks."""
    hub = services.hub
    counts = hub.metrics.messages_out
    latency = hub.metrics.latency.labels("sse")
    task = asyncio.current_task()

    def kill() -> None:
        if task is not None and not task.done():
            task.cancel()

    async with Session(hub, conn, kill, last_seq, epoch):
        yield SSE_RETRY
        while (batch := await conn.next_batch()) is not None:
            yield b"".join(frame.sse for frame in batch)
            for frame in batch:
                counts[(frame.type, "sse")] += 1
            latency.observe(time.monotonic() - batch[0].born)
        # closing: tell EventSource when to come back (a restart, a slow consumer)
        yield sse_closed(conn.close_code, conn.close_reason)


async def post_message(request: Request, services: ServicesDep) -> Response:
    if legacy.speaks_to(request):  # an SSE-era tab (LASTRA_LEGACY_WIRE)
        return await legacy.post(request, services)
    kind, fixed = ENDPOINTS[request.url.path]
    ref: str | None = None
    try:
        if not origin_allowed(services, request):
            raise ClientError("forbidden", "origin not allowed")
        identity = identity_of(services, bearer(request))
        raw = await read_body(request, services.settings.max_message_bytes)
        try:
            body = decode(raw) if raw.strip() else {}
        except ValueError:
            raise ClientError("bad_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):  # the body is the envelope's data
            raise ClientError("invalid", "the body must be a JSON object (the message's data)")
        ref = parse_ref(body)
        body.pop("ref", None)
        body.update(fixed)
        msg = parse_data(kind, body, ref)
        peer_id = request.headers.get("x-lastra-peer") or request.query_params.get("peerId")
        result = await services.hub.submit(identity, peer_id, msg)
    except ClientError as exc:
        if exc.ref is None:
            exc.ref = ref
        services.hub.metrics.error(exc.code, "sse")
        headers = {"Retry-After": "1"} if exc.code == "rate_limited" else None
        return error_response(exc, headers)
    return JSONResponse(result)


for _path in ENDPOINTS:
    router.add_api_route(_path, post_message, methods=["POST"], response_model=None)
