"""Signed identities: JWT HS256 tokens with ``sub`` (userId), ``name`` and ``exp``.

JWT rather than a home-made format so that an operator's own auth service can
mint tokens for Lastra with the shared ``LASTRA_SECRET``. PyJWT compares
signatures in constant time and checks ``exp``.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid

import jwt

from app.core import Identity

__all__ = ["Tokens", "new_user_id", "resolve_secret"]

log = logging.getLogger("lastra.auth")
ALGORITHM = "HS256"


def resolve_secret(configured: str) -> str:
    """The configured secret, or a fresh random one with a loud warning."""
    if configured:
        if len(configured) < 32:
            log.warning("LASTRA_SECRET is shorter than 32 characters; use a longer one")
        return configured
    log.warning(
        "LASTRA_SECRET is not set: generated a random one. Tokens will not survive a "
        "restart and several processes will not accept each other's tokens. "
        "Set LASTRA_SECRET (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)."
    )
    return secrets.token_urlsafe(48)


def new_user_id() -> str:
    return "u_" + uuid.uuid4().hex[:16]


class Tokens:
    def __init__(self, secret: str, ttl: float) -> None:
        self._secret = secret
        self.ttl = ttl

    def issue(self, user_id: str, user_name: str) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "name": user_name, "iat": now, "exp": now + int(self.ttl)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Identity | None:
        """The identity a token proves, or None (forged, expired, malformed)."""
        if not token or len(token) > 4096:
            return None
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["sub", "exp"]},
            )
        except jwt.PyJWTError:
            return None
        sub, name = claims.get("sub"), claims.get("name", claims.get("sub"))
        if not isinstance(sub, str) or not isinstance(name, str) or not sub or len(sub) > 128:
            return None
        return Identity(sub, name[:64])
