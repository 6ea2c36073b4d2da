"""app.auth.Tokens: verified tokens are remembered, but never past their ``exp``.

No network: the verifier is plain Python over PyJWT. The clock is injected, so
expiry is tested without waiting.
"""

from __future__ import annotations

import time

import jwt

from app.auth import Tokens
from app.core import Identity

SECRET = "unit-test-secret-0123456789abcdef0123"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    clock = Clock()
    tokens = Tokens(SECRET, ttl=60, clock=clock)
    token = tokens.issue("u_ada", "Ada")
    assert tokens.verify(token) == Identity("u_ada", "Ada")
    assert tokens.verify(token) == Identity("u_ada", "Ada")  # from memory this time
    clock.now += 61  # PyJWT is not asked again: the remembered entry itself must expire
    assert tokens.verify(token) is None
    assert tokens.verify(token) is None  # the full check uses the same clock


def test_refused_tokens_are_not_remembered() -> None:
    tokens = Tokens(SECRET, ttl=60)
    now = int(time.time())
    forged = jwt.encode(
        {"sub": "u_x", "exp": now + 60}, "another-secret-0123456789abcdef-0123456789", "HS256"
    )
    expired = jwt.encode({"sub": "u_x", "exp": now - 1}, SECRET, "HS256")
    not_yet = jwt.encode({"sub": "u_x", "exp": now + 60, "nbf": now + 30}, SECRET, "HS256")
    for bad in (forged, expired, not_yet, "not.a.token", ""):
        assert tokens.verify(bad) is None
        assert tokens.verify(bad) is None
    good = tokens.issue("u_x", "X")
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert tokens.verify(tampered) is None
    assert tokens.verify(good) == Identity("u_x", "X")


def test_memory_is_bounded() -> None:
    class Small(Tokens):
        CACHE_MAX = 3

    tokens = Small(SECRET, ttl=60)
    issued = [tokens.issue(f"u_{i}", f"n{i}") for i in range(10)]
    for i, token in enumerate(issued):
        assert tokens.verify(token) == Identity(f"u_{i}", f"n{i}")
        assert len(tokens._verified) <= 3
    assert all(tokens.verify(t) is not None for t in issued)  # a miss just verifies again
