"""The SSE-era client's wire (``LASTRA_LEGACY_WIRE``), for tabs opened before the migration.

An unmodified old tab sends no token: it names itself (``userId``, ``userName``)
on ``GET /api/chat-stream`` and in every POST body, and reads bare JSON payloads
under the old event names (``../shared/LEGACY_WIRE.md``). With the mode on, such
tokenless requests are answered here; anything carrying a token goes on to
today's protocol in :mod:`.sse`. Both meet in one core: one history, one presence.

- **Identity.** A legacy ``userId`` must look like the old client's
  (``user-<digits>-<base36>``), a namespace the server never issues (signed ids
  are ``u_…``), so a legacy tab can never pass as a signed user. Opening the
  stream binds that id to the browser with an HttpOnly, SameSite=Strict cookie
  (``lastra_legacy_<userId>``, an HMAC under the server secret with an expiry);
  a POST naming a ``userId`` needs that cookie, and clear/bot-toggle, which name
  none, need any valid one.
- **Translation** happens per connection as frames leave the queue
  (:class:`LegacyView`): the shared frames the hub queues for everyone are
  turned into the old events for this tab only. Legacy streams are written by a
  generator (a task per tab: they are few and going), so the direct write path
  of today's clients is not touched.
- **Calls** between legacy tabs are relayed verbatim (:data:`LEGACY_SIGNAL`,
  routed by ``targetUserId``); a legacy tab's peer never turns ``ready``, so
  today's clients never call it, and the core refuses their signals to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from app.core import ClientError, Event, Identity, parse_data
from app.core import Send as SendTo
from app.core.chat import LEGACY_TRANSPORT
from app.hub import Connection, Hub, Session
from app.wire import SSE_KEEPALIVE, decode

from .deps import Services, bearer, error_response, origin_allowed, read_body
from .http import _clean_name
from .legacy_view import LEGACY_SIGNAL, LegacyView, bots_data
from .legacy_wire import USER_ID, LegacyWire, wire_of

__all__ = [
    "LEGACY_SIGNAL",
    "LEGACY_TRANSPORT",
    "LegacyView",
    "LegacyWire",
    "bots_data",
    "open_stream",
    "post",
    "speaks_to",
    "wire_of",
]

log = logging.getLogger("lastra.legacy")

#: the POSTs of the old client (the others stay token-only)
POSTS = frozenset(
    {
        "/api/chat-ready",
        "/api/chat-message",
        "/api/chat-typing",
        "/api/chat-signal",
        "/api/bot-toggle",
        "/api/chat-clear",
    }
)
SIGNAL_TYPES = frozenset({"offer", "answer", "ice-candidate", "media-state"})
STREAM_TYPES = frozenset({"webcam", "desktop"})
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def speaks_to(request: Request) -> bool:
    """Whether ``request`` gets the old wire: the mode is on and it carries no token.

    The stream also needs ``userId`` in its query, which today's clients never
    send: a browser holding a ``lastra_token`` cookie from a new tab still gets
    the old wire in its old tabs.
    """
    if bearer(request) is not None or "token" in request.query_params:
        return False
    if request.method == "GET":
        if "userId" not in request.query_params:
            return False
    elif request.url.path not in POSTS:
        return False
    return wire_of(request).on()


def _address(request: HTTPConnection) -> str:
    return request.client.host if request.client else ""


def _refuse(hub: Hub, exc: ClientError) -> JSONResponse:
    """The error body; the old server answered bad or missing fields with 400."""
    hub.metrics.error(exc.code, LEGACY_TRANSPORT)
    headers = {"Retry-After": "5"} if exc.code == "rate_limited" else None
    status = 400 if exc.code in ("invalid", "bad_json") else None
    return error_response(exc, headers, status)


# ------------------------------------------------------------------- stream


async def open_stream(request: Request, services: Services) -> Response:
    """``GET /api/chat-stream?userId=&userName=``: the old greeting, then the old events."""
    hub, wire = services.hub, wire_of(request)
    address = _address(request)
    try:
        if not origin_allowed(services, request):
            raise ClientError("forbidden", "origin not allowed")
        user_id = request.query_params.get("userId", "")
        if not USER_ID.fullmatch(user_id):
            raise ClientError("invalid", "userId must look like user-<digits>-<letters>")
        name = _clean_name(request.query_params.get("userName"))
        # a new identity costs what a new session costs; a bound tab's reconnect is free
        if not wire.bound(request, user_id) and not services.allow_session(
            address, time.monotonic()
        ):
            raise ClientError("rate_limited", "too many new chat tabs from this address; wait")
    except ClientError as exc:
        return _refuse(hub, exc)
    conn = Connection(Identity(user_id, name), LEGACY_TRANSPORT, services.settings.outbound_queue)
    conn.address = address  # counts against LASTRA_MAX_ADDRESS_CONNECTIONS too
    refusal = hub.admit(conn)
    if refusal is not None:
        refused = ClientError("rate_limited", f"connection refused: {refusal}")
        return error_response(refused, {"Retry-After": "5"}, 503)
    try:  # until the stream runs, any failure must give the place back
        response = _LegacyStream(hub, conn, _events(services, wire, conn))
        wire.set_cookie(request, response, user_id)
    except BaseException:
        hub.release(conn)
        raise
    return response


class _LegacyStream(StreamingResponse):
    """The legacy tab's stream; gives its place back however it ends (or never starts)."""

    def __init__(self, hub: Hub, conn: Connection, events: AsyncIterator[bytes]) -> None:
        super().__init__(events, media_type="text/event-stream", headers=SSE_HEADERS)
        self._owner = (hub, conn)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub, conn = self._owner
        try:
            await super().__call__(scope, receive, send)
        finally:
            conn.finished()
            hub.detach(conn)


async def _events(services: Services, wire: LegacyWire, conn: Connection) -> AsyncIterator[bytes]:
    """Attach, then write each batch as this tab's old events; comments while idle.

    No ``id:`` and no ``retry:`` lines: the old client never resumes, and the old
    server never sent them.
    """
    hub = services.hub
    counts = hub.metrics.messages_out
    latency = hub.metrics.latency.labels(LEGACY_TRANSPORT)
    view = LegacyView(hub, conn.identity.user_id)
    task = asyncio.current_task()

    def kill() -> None:
        if task is not None:
            task.cancel()

    async with Session(hub, conn, kill):
        while True:
            try:
                batch = await conn.next_batch(services.settings.sse_keepalive)
            except TimeoutError:
                if not wire.on():
                    return
                yield SSE_KEEPALIVE
                continue
            if batch is None:
                return
            parts: list[bytes] = []
            for frame in batch:
                try:
                    events = view.translate(frame)
                except Exception:  # ours, not the tab's: skip the one event, keep the stream
                    log.exception("could not translate a %s event for an SSE-era tab", frame.type)
                    continue
                for name, data in events:
                    parts.append(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps(data)))
                    counts[(name, LEGACY_TRANSPORT)] += 1
            latency.observe(time.monotonic() - batch[0].born)
            if parts:
                yield b"".join(parts)


# -------------------------------------------------------------------- POSTs


async def post(request: Request, services: Services) -> Response:
    """One of the old client's POSTs; the reply refreshes the sender's cookie."""
    hub, wire = services.hub, wire_of(request)
    try:
        if not origin_allowed(services, request):
            raise ClientError("forbidden", "origin not allowed")
        raw = await read_body(request, services.settings.max_message_bytes)
        try:
            body = decode(raw) if raw.strip() else {}
        except ValueError:
            raise ClientError("bad_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ClientError("invalid", "the body must be a JSON object")
        path = request.url.path
        if path in ("/api/bot-toggle", "/api/chat-clear"):
            user = _any_user(request, wire, body)
            result = await _room_action(hub, user, path, body)
        else:
            user, peer_id = _sender(request, wire, body)
            result = await _tab_action(hub, user, peer_id, path, body)
    except ClientError as exc:
        return _refuse(hub, exc)
    response = JSONResponse(result)
    wire.set_cookie(request, response, user.user_id)
    return response


def _sender(
    request: Request, wire: LegacyWire, body: dict[str, Any]
) -> tuple[Identity, str | None]:
    """The tab a POST names, if this browser holds its cookie, and its peer here."""
    user_id = body.get("userId")
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise ClientError("invalid", "userId is missing or not an SSE-era id")
    if not wire.bound(request, user_id):
        raise ClientError("forbidden", "this browser did not open that userId's stream")
    entry = wire.services.hub.core.presence.users.get(user_id)
    if entry is None:  # no stream open: the name it asserts, cleaned
        return Identity(user_id, _clean_name(body.get("userName"))), None
    node = wire.services.hub.core.config.node
    mine = [p.peer_id for p in entry.peers.values() if p.node == node]
    return Identity(user_id, entry.user_name), (mine[-1] if mine else None)


def _any_user(request: Request, wire: LegacyWire, body: dict[str, Any]) -> Identity:
    """Clear and bot-toggle name no tab: any tab bound to this browser may send them."""
    user_id = wire.any_bound(request)
    if user_id is None:
        raise ClientError("forbidden", "open the chat stream in this browser first")
    entry = wire.services.hub.core.presence.users.get(user_id)
    if entry is not None:
        return Identity(user_id, entry.user_name)
    name = body.get("userName")
    return Identity(user_id, _clean_name(name) if name is not None else user_id)


async def _tab_action(
    hub: Hub, user: Identity, peer_id: str | None, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    match path:
        case "/api/chat-message":
            content = body.get("content")
            if not isinstance(content, str):
                raise ClientError("invalid", "content is required")
            ack = await _submit(hub, user, peer_id, "chat", {"text": content})
            return {"success": True, "messageId": ack.get("id")}
        case "/api/chat-typing":
            await _submit(hub, user, peer_id, "typing", {"isTyping": body.get("isTyping")})
        case "/api/chat-signal":
            await _signal(hub, user, peer_id, body)
        case _:  # /api/chat-ready: the tab takes offers from legacy tabs only (never ``ready``)
            pass
    return {"success": True}


async def _room_action(hub: Hub, user: Identity, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if path == "/api/chat-clear":
        await _submit(hub, user, None, "clear", {})
        return {"success": True}
    wanted = body.get("botName")
    bot = next(
        (b for b in hub.core.bots.values() if wanted in (b.display_name, b.name)),
        None,
    )
    if bot is None:
        raise ClientError("not_found", f"no bot named {wanted!r}")
    await _submit(hub, user, None, "bot-toggle", {"bot": bot.name, "enabled": body.get("enabled")})
    return {"success": True, "botName": bot.display_name, "enabled": bot.enabled}


async def _submit(
    hub: Hub, user: Identity, peer_id: str | None, kind: str, data: dict[str, Any]
) -> dict[str, Any]:
    msg = parse_data(kind, data, None)
    return await hub.submit(user, peer_id, msg, transport=LEGACY_TRANSPORT)


async def _signal(hub: Hub, user: Identity, peer_id: str | None, body: dict[str, Any]) -> None:
    """Relay a legacy signal verbatim to legacy tabs: by ``targetUserId``, else to all others.

    ``media-state`` also updates this tab's media in presence (every client's list).
    A target that is not a legacy tab gets nothing: the two call schemes do not mix.
    """
    stype = body.get("type")
    if stype not in SIGNAL_TYPES:
        raise ClientError("invalid", "type must be offer, answer, ice-candidate or media-state")
    stream = body.get("streamType")
    if stream is not None and stream not in STREAM_TYPES:
        raise ClientError("invalid", "streamType must be webcam or desktop")
    target = body.get("targetUserId")
    if target is not None and not isinstance(target, str):
        raise ClientError("invalid", "targetUserId must be a string")
    hub.core.charge(user, "signal", time.monotonic())
    if stype == "media-state":
        state = body.get("mediaState")
        if not isinstance(state, dict):
            raise ClientError("invalid", "mediaState must be an object")
        names = {"webcam": "camera", "microphone": "mic", "screen": "screen"}
        media = {names[k]: v for k, v in state.items() if k in names}
        if media and peer_id is not None:
            await _submit(hub, user, peer_id, "media-state", media)
        target = None
    relay = {**body, "userId": user.user_id, "userName": user.user_name}
    presence = hub.core.presence
    if target is not None:
        entry = presence.users.get(target) if USER_ID.fullmatch(target) else None
        peers = list(entry.peers.values()) if entry is not None else []
    else:
        peers = [
            p
            for p in presence.peers.values()
            if p.transport == LEGACY_TRANSPORT and p.user_id != user.user_id
        ]
    event = Event(LEGACY_SIGNAL, relay)
    hub.carry_out(
        [SendTo(p.peer_id, event) for p in peers if p.transport == LEGACY_TRANSPORT], None
    )
