"""Signed identities: JWT HS256 tokens with ``sub`` (userId), ``name`` and ``exp``.

JWT rather than a home-made format so that an operator's own auth service can
mint tokens for Lastra with the shared ``LASTRA_SECRET``. PyJWT issues them and
is the reference for what verifies; the common shape (header ``{alg, typ}``, no
``nbf``/``aud``/``jti``) is checked by a short path of our own that reaches the
same verdict at a fraction of the cost (it was ~12 % of the server's CPU per
connection at N=5000). Signatures are compared in constant time either way.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options

from app.core import Identity

__all__ = ["Tokens", "new_user_id", "resolve_secret"]

log = logging.getLogger("lastra.auth")
ALGORITHM = "HS256"
# PyJWT's options for our tokens; exp is checked by Tokens against its own clock, the
# one cached entries use
DECODE_OPTIONS: Options = {"require": ["sub", "exp"], "verify_exp": False}

# base64url to standard base64; '+', '/' and '=' become '!', which strict a2b_base64 refuses
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
# The last character of a segment of length 4k+2 (4k+3) carries 4 (2) unused bits, which
# must be zero: PyJWT refuses a segment that does not re-encode to itself
_LAST = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
_HEADER_KEYS = frozenset({"alg", "typ"})


class _Verdict(enum.Enum):
    FORGED = "forged"  # the signature is not ours: PyJWT would refuse it too
    ASK_PYJWT = "ask-pyjwt"  # not the common shape: PyJWT decides


def _segment(segment: bytes) -> bytes | None:
    """The bytes of an unpadded base64url segment in PyJWT's canonical form, else None."""
    rest = len(segment) % 4
    if rest == 1 or (rest and segment[-1] not in _LAST[rest]):
        return None
    try:
        return binascii.a2b_base64(
            segment.translate(_TO_STANDARD) + b"=" * (4 - rest if rest else 0), strict_mode=True
        )
    except binascii.Error:
        return None


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
    reconnect; a first check costs ~6 µs (PyJWT's full decode ~30 µs), a dictionary
    hit well under one. Only tokens that passed the full check are remembered, keyed
    by the whole token string, and each entry is refused again from its ``exp`` on.
    The map is bounded (cleared when full) and lives in this process only.

    The first check (:meth:`_claims`) accepts and refuses exactly what
    ``jwt.decode(token, secret, ["HS256"], DECODE_OPTIONS)`` does (tests/test_auth_fast.py
    compares the two): the signature is checked first, so forged tokens never reach
    a JSON parser, and a signed token in any but the common shape goes to PyJWT.
    """

    CACHE_MAX = 65_536

    def __init__(self, secret: str, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.ttl = ttl
        self._clock = clock
        self._verified: dict[str, tuple[Identity, float]] = {}
        try:  # PyJWT's own checks on the key (not empty, not a PEM/JWK/...), done once
            key = HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret)
        except (jwt.InvalidKeyError, UnicodeError):  # PyJWT refuses (or fails on) every token
            self._mac: hmac.HMAC | None = None  # with it; let it say so
        else:  # keyed once; each check copies it (half the cost of hmac.digest)
            self._mac = hmac.new(key, digestmod=hashlib.sha256)

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
        claims = self._claims(token)
        if claims is _Verdict.FORGED:
            return None
        if claims is _Verdict.ASK_PYJWT:
            try:
                claims = jwt.decode(token, self._secret, [ALGORITHM], DECODE_OPTIONS)
            except jwt.PyJWTError:
                return None
        exp = claims.get("exp")  # (None if absent: PyJWT requires it, _claims does not)
        if (
            isinstance(exp, bool)
            or not isinstance(exp, (int, float))
            or not math.isfinite(exp)  # NaN never compares as expired, 1e400 never expires
            or self._clock() >= exp
        ):
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

    def _claims(self, token: str) -> dict[str, Any] | _Verdict:
        """The claims PyJWT would return for ``token``, or FORGED, or ASK_PYJWT.

        Only a bad signature is refused here. A segment with padding, a header beyond
        ``{"alg": "HS256", "typ"}``, ``nbf``/``aud``/``jti``, an ``iat`` that is not a
        plain number in the past, JSON that orjson will not read (NaN, BOM, lone
        surrogates, 1e400): all go to PyJWT, which decides.
        """
        if self._mac is None or not token.isascii():
            return _Verdict.ASK_PYJWT
        signed, _, signature = token.encode().rpartition(b".")
        header_segment, dot, payload_segment = signed.partition(b".")
        if not dot or b"." in payload_segment:
            return _Verdict.ASK_PYJWT
        mac = self._mac.copy()
        mac.update(signed)
        expected = base64.urlsafe_b64encode(mac.digest())[:43]
        if len(signature) == 44 and signature[43:] == b"=":  # the one padding PyJWT accepts
            signature = signature[:43]
        if not hmac.compare_digest(signature, expected):
            return _Verdict.FORGED
        header_bytes, payload_bytes = _segment(header_segment), _segment(payload_segment)
        if header_bytes is None or payload_bytes is None:
            return _Verdict.ASK_PYJWT
        try:
            header, claims = orjson.loads(header_bytes), orjson.loads(payload_bytes)
        except orjson.JSONDecodeError:
            return _Verdict.ASK_PYJWT
        if (
            not isinstance(header, dict)
            or header.get("alg") != ALGORITHM
            or not header.keys() <= _HEADER_KEYS
            or not isinstance(claims, dict)
            or "nbf" in claims  # the claims PyJWT validates beyond sub/exp/iat (with our
            or "aud" in claims  # options): left to it
            or "jti" in claims
        ):
            return _Verdict.ASK_PYJWT
        if "iat" in claims:  # PyJWT refuses an iat in the future by the wall clock
            iat = claims["iat"]
            if type(iat) not in (int, float) or iat > time.time():
                return _Verdict.ASK_PYJWT
        return claims
