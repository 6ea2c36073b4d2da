"""Security headers on every HTTP response, as a pure ASGI middleware.

Pure ASGI (not ``BaseHTTPMiddleware``) so SSE streams pass through unbuffered.
The CSP allows no inline script or style: the bundled page satisfies it.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "SecurityHeaders", "host_allowed", "refuse_host", "secured"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(self), microphone=(self), display-capture=(self)"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, secured(send))


def secured(send: Send) -> Send:
    """``send``, with :data:`HEADERS` added to the response start (the middleware's job,
    also for handlers the app calls before it: ``app.transports.sse.serve``)."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *HEADERS]
        await send(message)

    return send_with_headers


def host_allowed(scope: Scope, allowed: list[str]) -> bool:
    """``LASTRA_ALLOWED_HOSTS``: the ``Host`` header (port aside) is listed, or matches a
    ``*.example.com`` entry. Empty list: any host. Stops DNS rebinding, where a page on
    ``evil.com`` resolves its own name to this server and sends a matching ``Origin``."""
    if not allowed or "*" in allowed:
        return True
    hosts = [value for key, value in scope.get("headers") or () if key == b"host"]
    return bool(hosts) and all(_listed(raw.decode("latin-1").lower(), allowed) for raw in hosts)


def _listed(host: str, allowed: list[str]) -> bool:
    """``host`` (port aside) is an entry, or under a ``*.example.com`` one."""
    host = host[: host.rindex("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
    for entry in allowed:
        entry = entry.lower()
        if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


async def refuse_host(scope: Scope, receive: Receive, send: Send) -> None:
    """400 for HTTP; for a WebSocket handshake, a close before accept (HTTP 403)."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 4403, "reason": "host-not-allowed"})
        return
    body = orjson.dumps({"code": "invalid", "message": "host not allowed"})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 400, "headers": headers + HEADERS})
    await send({"type": "http.response.body", "body": body})
