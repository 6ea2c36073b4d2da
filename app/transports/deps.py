"""What the routes share: the running services and how a request proves who it is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from app.auth import Tokens
from app.core import ClientError, Identity, Rollout
from app.core.errors import HTTP_STATUS
from app.hub import Hub
from app.settings import Settings

__all__ = ["Services", "ServicesDep", "bearer", "error_response", "identity_of"]


@dataclass
class Services:
    settings: Settings
    hub: Hub
    tokens: Tokens
    rollout: Rollout


def get_services(conn: HTTPConnection) -> Services:
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


def error_response(exc: ClientError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.data(), status_code=HTTP_STATUS[exc.code], headers=headers)


def client_error(code: Any, message: str) -> ClientError:
    return ClientError(code, message)


def origin_allowed(services: Services, request: Request | HTTPConnection) -> bool:
    """Origin allow-list: empty list means same-origin browsers and non-browser clients."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    allowed = services.settings.allowed_origins
    if allowed:
        return "*" in allowed or origin in allowed
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
