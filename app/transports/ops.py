"""Operator endpoints: ``/metrics``, ``/readyz`` and the ``/admin`` numbers."""

from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.core import ClientError

from .deps import STATIC, ServicesDep, bearer, error_response

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics", response_model=None)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the store (and so, in Redis mode, the broker's server) answers."""
    started = time.monotonic()
    try:
        await services.hub.store.ping()
    except Exception as exc:  # no hosts or ports in the body: it may be public
        return JSONResponse({"status": "unavailable", "store": type(exc).__name__}, status_code=503)
    took = round((time.monotonic() - started) * 1000, 2)
    return JSONResponse({"status": "ready", "backend": services.settings.backend, "storeMs": took})


@router.get("/admin", response_model=None)
async def admin_page() -> Response:
    """The page itself is public; its numbers need the admin token (asked by the page)."""
    return FileResponse(STATIC / "admin.html")


@router.get("/api/admin/stats", response_model=None)
async def admin_stats(request: Request, services: ServicesDep) -> JSONResponse:
    expected = services.settings.admin_token
    given = bearer(request) or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(ClientError("not_authenticated", "the admin token is required"))
    hub, settings = services.hub, services.settings
    by_transport: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    for conn in hub.conns.values():
        by_transport[conn.transport] = by_transport.get(conn.transport, 0) + 1
        users.setdefault(conn.transport, set()).add(conn.identity.user_id)
    queued = [conn.queued() for conn in hub.conns.values()]
    return JSONResponse(
        {
            "flag": {
                "transport": settings.transport,
                "wsRolloutPercent": settings.ws_rollout_percent,
                "wsUsers": len(settings.ws_users),
                "sseUsers": len(settings.sse_users),
                "sseEnabled": settings.sse_enabled,
            },
            "backend": settings.backend,
            "node": hub.broker.node,
            "connections": by_transport,
            "users": {t: len(u) for t, u in users.items()},
            "onlineUsers": len(hub.core.presence.users),
            "window": hub.metrics.window(5),
            "outboundQueued": {"max": max(queued, default=0), "total": sum(queued)},
            "lastSeq": await hub.store.last_seq(),
            "epoch": hub.store.epoch,
        }
    )
