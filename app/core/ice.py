"""ICE servers for ``ready.iceServers``, with time-limited TURN credentials.

The TURN REST scheme that coturn's ``use-auth-secret`` accepts: the username is
``<unix expiry>:<userId>`` and the credential is base64(HMAC-SHA1(secret,
username)). coturn recomputes it with the same ``static-auth-secret`` and
refuses it after the expiry, so nothing long-lived reaches the browser.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

__all__ = ["ice_servers", "turn_credential"]


def turn_credential(secret: str, user_id: str, expires_at: int) -> tuple[str, str]:
    """``(username, credential)`` valid until ``expires_at`` (unix seconds)."""
    username = f"{expires_at}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    urls: list[str], turn_secret: str, ttl: float, user_id: str, now: float
) -> list[dict[str, Any]]:
    """STUN URLs as they are; TURN URLs with credentials when a secret is set."""
    stun = [u for u in urls if u.startswith(("stun:", "stuns:"))]
    turn = [u for u in urls if u.startswith(("turn:", "turns:"))]
    out: list[dict[str, Any]] = []
    if stun:
        out.append({"urls": stun})
    if turn:
        entry: dict[str, Any] = {"urls": turn}
        if turn_secret:
            username, credential = turn_credential(turn_secret, user_id, int(now + ttl))
            entry["username"] = username
            entry["credential"] = credential
        out.append(entry)
    return out
