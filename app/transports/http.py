"""Sessions, the transport flag as seen by a client, and health."""

from __future__ import annotations

import time
import unicodedata
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.auth import new_user_id
from app.core import ClientError
from app.wire import decode

from .deps import ServicesDep, bearer, error_response, identity_of, origin_allowed, read_body

__all__ = ["router"]

router = APIRouter()


#: letters, marks, numbers, punctuation and symbols that still draw nothing: Hangul
#: fillers, the blank Braille pattern, and the like (Unicode's ``Default_Ignorable`` set)
_BLANK = frozenset("\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")


def _visible(ch: str) -> bool:
    """Draws something: not a space, control, format (bidi, zero-width) or mark alone."""
    return unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANK


def _clean_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ClientError("invalid", "userName must be a string")
    name = value.strip()
    if not 1 <= len(name) <= 64:
        raise ClientError("invalid", "userName must be 1-64 characters after trimming")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in name):
        raise ClientError("invalid", "userName must not contain control or invisible characters")
    if not any(_visible(ch) for ch in name):
        raise ClientError("invalid", "userName must contain a visible character")
    return name


@router.post("/api/session", response_model=None)
async def create_session(request: Request, services: ServicesDep) -> JSONResponse:
    """Issue a signed token. With a valid bearer token, keep that userId (refresh)."""
    try:
        if not origin_allowed(services, request):
            raise ClientError("forbidden", "origin not allowed")
        ip = request.client.host if request.client else "?"
        if not services.allow_session(ip, time.monotonic()):
            raise ClientError("rate_limited", "too many sessions from this address; wait")
        raw = await read_body(request, 4096)
        try:
            body = decode(raw) if raw.strip() else {}
        except ValueError:
            raise ClientError("bad_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ClientError("invalid", "the body must be a JSON object {userName}")
        name = _clean_name(body.get("userName"))
    except ClientError as exc:
        headers = {"Retry-After": "5"} if exc.code == "rate_limited" else None
        return error_response(exc, headers)
    previous = services.tokens.verify(bearer(request) or "")
    user_id = previous.user_id if previous else new_user_id()
    token = services.tokens.issue(user_id, name)
    transport, reason = services.assign(user_id)
    services.hub.metrics.sessions.inc()
    base = str(request.base_url).rstrip("/")
    ws_base = "ws" + base[4:] if base.startswith("http") else base
    payload = {
        "userId": user_id,
        "userName": name,
        "token": token,
        "transport": transport,
        "reason": reason,
        "expiresIn": int(services.tokens.ttl),
        "urls": {"ws": f"{ws_base}/api/chat.ws", "sse": f"{base}/api/chat-stream"},
    }
    response = JSONResponse(payload)
    response.set_cookie(
        "lastra_token",
        token,
        max_age=int(services.tokens.ttl),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/api",
    )
    return response


@router.get("/api/transport", response_model=None)
async def transport(request: Request, services: ServicesDep) -> JSONResponse:
    try:
        identity = identity_of(services, bearer(request))
    except ClientError as exc:
        return error_response(exc)
    transport, reason = services.assign(identity.user_id)
    return JSONResponse({"transport": transport, "reason": reason})


@router.get("/healthz", response_model=None)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})
