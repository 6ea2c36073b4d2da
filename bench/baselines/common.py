"""What every baseline shares: the same chat envelope as Lastra, built once per message.

Baselines do not verify tokens (they only read the JWT payload for the user's
name), keep no history and no presence: they are the floor of each design, not
a chat server.
"""

from __future__ import annotations

import argparse
import base64
import time
import uuid
from typing import Any

import orjson


def identity(token: str) -> tuple[str, str]:
    """``(userId, userName)`` from a JWT's payload, unverified."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
        sub = str(claims["sub"])
        return sub, str(claims.get("name", sub))
    except (IndexError, KeyError, ValueError):
        return "anon", "anon"


class Room:
    """A sequence counter and the envelope of a user's chat message (Lastra's shape)."""

    def __init__(self) -> None:
        self.seq = 0

    def chat(self, user_id: str, user_name: str, data: Any) -> dict[str, Any]:
        self.seq += 1
        seq = self.seq
        msg: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "ts": int(time.time() * 1000),
            "kind": "user",
            "userId": user_id,
            "userName": user_name,
            "text": str(data.get("text", "")) if isinstance(data, dict) else "",
        }
        if isinstance(data, dict) and isinstance(data.get("clientId"), str):
            msg["clientId"] = data["clientId"]
        msg["seq"] = seq
        return {"type": "chat", "seq": seq, "data": msg}

    def ready(self, user_id: str, user_name: str) -> bytes:
        data = {"userId": user_id, "userName": user_name, "lastSeq": self.seq}
        return orjson.dumps({"type": "ready", "data": data})


def args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


def run_uvicorn(app: Any, host: str, port: int) -> None:
    """Serve an ASGI app the way Lastra is served (uvloop, httptools, no WS pings)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        ws_ping_interval=None,
        loop="uvloop",
        http="httptools",
        backlog=2048,
        timeout_graceful_shutdown=2,
    )
