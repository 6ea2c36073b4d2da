"""Operator endpoints: ``/metrics``, ``/readyz`` and the ``/admin`` numbers."""

from __future__ import annotations

import functools
import hmac
import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.core import ClientError
from app.cost import BenchCost, Sampler, load_bench_cost
from app.scorecard import scorecard

from .deps import STATIC, Services, ServicesDep, bearer, error_response

__all__ = ["router"]

router = APIRouter()
log = logging.getLogger("lastra.ops")

_SAMPLER = Sampler()


@functools.cache
def _bench() -> BenchCost | None:
    """Read on first use, once: the files change only with a new benchmark run."""
    return load_bench_cost()


@router.get("/metrics", response_model=None)
async def metrics(services: ServicesDep) -> Response:
    return Response(services.hub.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", response_model=None)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the store (and so, in Redis mode, the broker's server) takes a write.

    The root cause goes to the log, not to the body: no hosts or paths in public.
    """
    started = time.monotonic()
    try:
        await services.hub.store.ping()
    except Exception as exc:
        cause = exc.__cause__ or exc
        log.warning("not ready: the store cannot write: %s: %s", type(cause).__name__, cause)
        return JSONResponse({"status": "unavailable", "store": type(exc).__name__}, status_code=503)
    took = round((time.monotonic() - started) * 1000, 2)
    return JSONResponse({"status": "ready", "backend": services.settings.backend, "storeMs": took})


@router.get("/admin", response_model=None)
async def admin_page() -> Response:
    """The page itself is public; its numbers need the admin token (asked by the page)."""
    return FileResponse(STATIC / "admin.html")


@router.get("/api/admin/stats", response_model=None)
async def admin_stats(request: Request, services: ServicesDep) -> JSONResponse:
    refused = _refuse_non_admin(request, services)
    if refused is not None:
        return refused
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
            **_rollout_figures(request, services, by_transport),
        }
    )


def _refuse_non_admin(request: Request, services: Services) -> JSONResponse | None:
    """None for a request with the admin token; else the 401 to answer with."""
    expected = services.settings.admin_token
    given = bearer(request) or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(ClientError("not_authenticated", "the admin token is required"))
    return None


def _rollout_figures(
    request: Request, services: Services, connections: dict[str, int]
) -> dict[str, Any]:
    """The five success metrics over ``?minutes=`` (1-60, default 5) and the guard."""
    raw = request.query_params.get("minutes", "5")
    minutes = min(60, max(1, int(raw))) if raw.isdigit() else 5
    metrics, guard = services.hub.metrics, services.guard
    summary = metrics.cohorts.summary(minutes * 60)
    live = _SAMPLER.sample()
    errors = metrics.window(minutes)["byTransport"]
    return {
        "minutes": minutes,
        "scorecard": scorecard(errors, summary["cohorts"], connections, _bench(), live),
        "cohorts": summary["cohorts"],
        "callPairs": summary["pairs"],
        "process": live,
        "guard": {**guard.view(), **guard.state} if guard is not None else None,
    }


@router.post("/api/admin/guard/clear", response_model=None)
async def clear_guard(request: Request, services: ServicesDep) -> JSONResponse:
    """The operator's all-clear: WebSocket is assigned again, on every process."""
    refused = _refuse_non_admin(request, services)
    if refused is not None:
        return refused
    if services.guard is None:
        return error_response(ClientError("not_found", "no rollout guard here"))
    await services.guard.clear("admin")
    return JSONResponse({"tripped": False})


async def test_fault(request: Request, services: ServicesDep) -> JSONResponse:
    """Tests only (``LASTRA_TEST_FAULTS``): close every open WebSocket abnormally (1011).

    What a broken proxy or a crashing WebSocket path does to the WebSocket cohort, so
    the guard can be seen to trip on a real server with real clients.
    """
    refused = _refuse_non_admin(request, services)
    if refused is not None:
        return refused
    closed = 0
    for conn in list(services.hub.conns.values()):
        if conn.transport == "ws":
            conn.close(1011, "test-fault")
            closed += 1
    return JSONResponse({"closed": closed})


def add_test_routes(app_router: APIRouter) -> None:
    """Mount the fault hook; ``create_app`` calls this only when LASTRA_TEST_FAULTS is on."""
    app_router.add_api_route("/api/test/fault", test_fault, methods=["POST"], response_model=None)
