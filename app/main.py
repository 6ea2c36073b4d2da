"""The application factory: builds everything from one ``Settings`` with a lifespan.

No import-time globals: tests create apps with different settings side by side.
``app.main:app`` (for ``uvicorn app.main:app``) is built lazily on first access.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from app.auth import Tokens, resolve_secret
from app.backends import make_broker, make_store
from app.bots import create_bots, load_personalities
from app.bots import routes as bot_routes
from app.core import Chat, ChatConfig, Rollout
from app.core.ice import ice_servers
from app.core.ratelimit import Rate
from app.core.reports import GuardThresholds
from app.guard import Guard
from app.hub import Hub
from app.logs import configure as configure_logs
from app.metrics import Metrics
from app.security import SecurityHeaders, host_allowed, refuse_host
from app.settings import Settings
from app.transports import http, ops, sse, websocket
from app.transports.deps import Services

__all__ = ["create_app"]

log = logging.getLogger("lastra")
STATIC = Path(__file__).parent / "static"

_STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "invalid",
    413: "too_large",
    422: "invalid",
    429: "rate_limited",
}


def chat_config(settings: Settings, node: str = "local") -> ChatConfig:
    return ChatConfig(
        node=node,
        typing_timeout=settings.typing_timeout,
        presence_grace=settings.presence_grace,
        presence_batch=settings.presence_batch,
        presence_snapshot_max=settings.presence_snapshot_max,
        presence_batch_large=settings.presence_batch_large,
        presence_page=settings.presence_page,
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
        history_limit=settings.history_limit,
        max_message_bytes=settings.max_message_bytes,
        rate_chat=Rate(settings.rate_chat, settings.rate_chat_burst),
        rate_signal=Rate(settings.rate_signal, settings.rate_signal_burst),
        rate_other=Rate(settings.rate_other, settings.rate_other_burst),
        rate_report=Rate(settings.rate_report, settings.rate_report_burst),
        ai_available=True,  # the offline provider needs nothing, so there always is one
        moderators=frozenset(settings.moderators),
    )


def rollout_of(settings: Settings) -> Rollout:
    return Rollout(
        mode=settings.transport,
        percent=settings.ws_rollout_percent,
        ws_users=frozenset(settings.ws_users),
        sse_users=frozenset(settings.sse_users),
        sse_enabled=settings.sse_enabled,
    )


def rollout_guard(settings: Settings, hub: Hub) -> Guard:
    """The guard, its thresholds from settings, its lines on the app's ``/metrics``."""
    guard = Guard(
        hub.metrics.cohorts,
        hub.broker,
        enabled=settings.rollout_guard,
        window=settings.rollout_guard_window,
        thresholds=GuardThresholds(
            abnormal_closes=settings.rollout_guard_abnormal_closes,
            failed_resumes=settings.rollout_guard_failed_resumes,
            call_failures=settings.rollout_guard_call_failures,
            delivery_p99_ms=settings.rollout_guard_delivery_p99_ms,
            min_samples=settings.rollout_guard_min_samples,
        ),
    )
    hub.metrics.registry.register(guard)
    return guard


class LastraApp(FastAPI):
    """FastAPI, except that ``/api/chat.ws`` and ``GET /api/chat-stream`` go straight
    to their handlers.

    A chat socket or event stream stays open for hours; routing it through the
    middleware stack and FastAPI's dependency machinery would keep all their frames
    alive, per client, for that long, and cost about half of an SSE connect's CPU
    (see :mod:`app.transports.websocket`, :func:`app.transports.sse.serve`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            allowed = self.state.services.settings.allowed_hosts
            if allowed and not host_allowed(scope, allowed):
                await refuse_host(scope, receive, send)
                return
        if websocket.is_chat_ws(scope):
            await websocket.serve(self.state.services, scope, receive, send)
            return
        if sse.is_chat_stream(scope):
            await sse.serve(self.state.services, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logs(settings.log_level, settings.log_format)
    if settings.backend == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    tokens = Tokens(resolve_secret(settings.secret), settings.token_ttl)
    broker = make_broker(settings)
    personalities = load_personalities(settings.bots_dir)  # BotConfigError names file and field
    core = Chat(chat_config(settings, broker.node), [p.bot() for p in personalities])
    hub = Hub(
        core,
        make_store(settings),
        broker,
        metrics=Metrics(),
        max_connections=settings.max_connections,
        max_user_connections=settings.max_user_connections,
        max_address_connections=settings.max_address_connections,
        max_queue_bytes=settings.outbound_queue_bytes,
        ice_servers=lambda user_id: ice_servers(
            settings.ice_servers, settings.turn_secret, settings.turn_ttl, user_id, time.time()
        ),
    )
    bots = create_bots(settings, hub, personalities)
    hub.bots = bots
    guard = rollout_guard(settings, hub)
    services = Services(settings, hub, tokens, rollout_of(settings), guard=guard)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        guard.start()
        log.info(
            "lastra chat serving: backend=%s transport=%s", settings.backend, settings.transport
        )
        try:
            yield
        finally:
            await guard.stop()
            await hub.stop()

    app = LastraApp(title="Lastra Chat", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.bots = bots
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(
            exc.status_code, "internal" if exc.status_code >= 500 else "invalid"
        )
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"code": "invalid", "message": f"{where}: {first.get('msg', 'invalid')}"},
            status_code=422,
        )

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, exc: Exception) -> JSONResponse:
        """The client gave up mid-body: not our fault, one info line.

        Its own handler, not the catch-all below: Starlette re-raises what reaches
        the catch-all, and uvicorn then logs it again as an ERROR with a traceback.
        """
        log.info("client went away during %s", request.url.path)
        return JSONResponse({"code": "invalid", "message": "incomplete body"}, 400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"code": "internal", "message": "internal error"}, status_code=500)

    app.include_router(http.router)
    app.include_router(sse.router)
    app.include_router(bot_routes.router)
    app.include_router(ops.router)
    if settings.test_faults:
        ops.add_test_routes(app.router)
    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app


def __getattr__(name: str) -> Any:
    """``uvicorn app.main:app`` builds the app from the environment on first access."""
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
