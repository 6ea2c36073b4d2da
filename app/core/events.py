"""Small builders of the server events the room makes: acks, typing, ids."""

from __future__ import annotations

import uuid
from typing import Any

from .outputs import Event, Reply

__all__ = ["ack", "new_id", "typing_event"]


def ack(ref: str | None, **fields: Any) -> Reply:
    data = dict(fields)
    if ref is not None:
        data["ref"] = ref
    return Reply(Event("ack", data))


def typing_event(user_id: str, name: str, typing: bool) -> Event:
    return Event("typing", {"userId": user_id, "userName": name, "isTyping": typing})


def new_id() -> str:
    return uuid.uuid4().hex
