"""What the routes share: the running services and how a request proves who it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from app.auth import Tokens
from app.core import Assignment, ClientError, Identity, Rollout
from app.core.errors import HTTP_STATUS
from app.core.ratelimit import Bucket, Rate
from app.guard import Guard
from app.hub import Hub
from app.settings import Settings

from .flush import Flusher

__all__ = ["STATIC", "Services", "ServicesDep", "bearer", "error_response", "identity_of"]

STATIC = Path(__file__).resolve().parent.parent / "static"


@dataclass
class Services:
    settings: Settings
    hub: Hub
    tokens: Tokens
    rollout: Rollout
    session_buckets: dict[str, Bucket] = field(default_factory=dict)
    guard: Guard | None = None
    _flusher: Flusher | None = None

    def flusher(self) -> Flusher:
        """The direct writer of every WebSocket and SSE stream (made on first use)."""
        if self._flusher is None:
            self._flusher = Flusher(self.hub.metrics, self.settings.sse_keepalive)
        return self._flusher

    def allow_session(self, ip: str, now: float) -> bool:
        """Per-IP token bucket on session creation (bounded memory)."""
        bucket = self.session_buckets.get(ip)
        if bucket is None:
            if len(self.session_buckets) > 50_000:
                self.session_buckets.clear()
            rate = Rate(self.settings.session_rate, self.settings.session_burst)
            bucket = self.session_buckets[ip] = Bucket(rate, now)
        return bucket.take(now)

    def assignment(self, user_id: str) -> Assignment:
        """The user's transport now: the flag, overruled by a tripped rollout guard."""
        tripped = self.guard is not None and self.guard.tripped
        return self.rollout.assign(user_id, guard_tripped=tripped)

    def assign(self, user_id: str) -> tuple[str, str]:
        """The user's transport now, counted for the rollout dashboards."""
        a = self.assignment(user_id)
        self.hub.metrics.assignments.labels(a.transport, a.reason.split(":")[0]).inc()
        return a.transport, a.reason


async def get_services(conn: HTTPConnection) -> Services:  # async: no thread-pool hop
    services: Services = conn.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer(request: HTTPConnection) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def identity_of(services: Services, token: str | None) -> Identity:
    identity = services.tokens.verify(token or "")
    if identity is None:
        raise ClientError("not_authenticated", "a valid token is required")
    return identity


def error_response(
    exc: ClientError, headers: dict[str, str] | None = None, status: int | None = None
) -> JSONResponse:
    """The error data as the body, with the code's HTTP status (or ``status``)."""
    return JSONResponse(exc.data(), status_code=status or HTTP_STATUS[exc.code], headers=headers)


def client_error(code: Any, message: str) -> ClientError:
    return ClientError(code, message)


def origin_allowed(services: Services, request: Request | HTTPConnection) -> bool:
    """Origin allow-list: empty list means same-origin browsers and non-browser clients.

    One pass over the raw headers for both names (Starlette's ``Headers.get`` walks
    the list once per name; this runs on every connect and POST).
    """
    origin: bytes | None = None
    host: bytes | None = None
    for key, value in request.scope["headers"]:
        if key == b"origin" and origin is None:
            origin = value
        elif key == b"host" and host is None:
            host = value
    if origin is None:
        return True
    allowed = services.settings.allowed_origins
    text = origin.decode("latin-1")
    if allowed:
        return "*" in allowed or text in allowed
    return text.split("://", 1)[-1] == (host or b"").decode("latin-1")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as ``too_large`` from its Content-Length or once it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ClientError("too_large", f"the body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ClientError("too_large", f"the body is over {limit} bytes")
    return bytes(body)
