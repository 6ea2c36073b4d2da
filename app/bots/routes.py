"""``GET /api/bots``: the configured bots, their triggers and whether they are enabled."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.transports import legacy

from .service import BotRoom

__all__ = ["router"]

router = APIRouter()


def get_bots(request: Request) -> BotRoom:
    bots: BotRoom = request.app.state.bots
    return bots


BotsDep = Annotated[BotRoom, Depends(get_bots)]


@router.get("/api/bots")
async def list_bots(request: Request, bots: BotsDep) -> dict[str, Any]:
    """``{"provider": "offline"|"openai", "bots": [{name, displayName, personality, ...}]}``.

    With the legacy wire on, also ``data``: the same bots as SSE-era tabs read them.
    """
    described = bots.describe()
    answer: dict[str, Any] = {"provider": bots.provider.name, "bots": described}
    if legacy.wire_of(request).on():
        answer["data"] = legacy.bots_data(described)
    return answer
