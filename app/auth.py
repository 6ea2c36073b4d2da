"""Signed identities: JWT HS256 tokens with ``sub`` (userId), ``name`` and ``exp``.

JWT rather than a home-made format so that an operator's own auth service can
mint tokens for Lastra with the shared ``LASTRA_SECRET``. PyJWT compares
signatures in constant time and checks ``exp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable

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
    """Issues and verifies tokens; remembers the ones it has verified until they expire.

    A client sends the same token with every POST (the SSE transport) and every
    reconnect; PyJWT's full decode costs about 80 µs, a dictionary hit well under
    one. Only tokens that passed the full check are remembered, keyed by the whole
    token string, and each entry is refused again from its ``exp`` on. The map is
    bounded (cleared when full) and lives in this process only.
    """

    CACHE_MAX = 65_536

    def __init__(self, secret: str, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._verified: dict[str, tuple[Identity, float]] = {}

    def issue(self, user_id: str, user_name: str) -> str:
        now = int(time.time())
        claims = {"sub": user_id, "name": user_name, "iat": now, "exp": now + int(self.ttl)}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def sign(self, purpose: str, message: str) -> str:
        """An HMAC of ``message`` under the secret, separated by ``purpose`` (not a token).

        For values that must not verify as tokens, e.g. the legacy wire's cookie binding.
        """
        key = hashlib.sha256(f"lastra:{purpose}:".encode() + self._secret.encode()).digest()
        mac = hmac.new(key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def verify(self, token: str) -> Identity | None:
        """The identity a token proves, or None (forged, expired, malformed)."""
        if not token or len(token) > 4096:
            return None
        known = self._verified.get(token)
        if known is not None:
            if self._clock() < known[1]:
                return known[0]
            del self._verified[token]
            return None
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                # exp is checked below against our own clock, the one cached entries use
                options={"require": ["sub", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or self._clock() >= exp:
            return None
        sub, name = claims.get("sub"), claims.get("name", claims.get("sub"))
        if not isinstance(sub, str) or not isinstance(name, str) or not sub or len(sub) > 128:
            return None
        identity = Identity(sub, name[:64])
        if "nbf" not in claims:  # (a token not valid yet is simply checked in full each time)
            if len(self._verified) >= self.CACHE_MAX:
                self._verified.clear()
            self._verified[token] = (identity, float(exp))
        return identity
