"""app.auth.Tokens' own token check reaches PyJWT's verdict, token for token.

``Tokens.verify`` checks the common token shape itself (HMAC, base64url, orjson) and
leaves anything else to PyJWT. Here it is compared with a reference that is the check
as it was before, PyJWT alone with the same options plus our claim rules, over tokens
built to hit every branch: tampered signatures, headers and payloads, other
algorithms, ``crit``/``kid``/``b64``, ``nbf``/``aud``/``jti``/``iat`` of every type,
padding and non-canonical base64, extra segments, non-object and non-standard JSON.

No network. The clock for ``exp`` is injected; PyJWT checks ``iat`` against the wall
clock, so generated ``iat`` values are an hour away or from before the tests started.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from app.auth import Tokens, _Verdict
from app.core import Identity

SECRET = "unit-test-secret-0123456789abcdef0123"
OTHER = "another-secret-0123456789abcdef-0123456789"
NOW = time.time()
HOUR = 3600


class Reference:
    """``Tokens.verify`` as it was before the fast path, cache and all: PyJWT decides."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.verified: dict[str, tuple[Identity, float]] = {}

    def verify(self, token: str) -> Identity | None:
        if not token or len(token) > 4096:
            return None
        known = self.verified.get(token)
        if known is not None:
            if known[1] > NOW:
                return known[0]
            del self.verified[token]
            return None
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp <= NOW:
            return None
        if not math.isfinite(exp):  # (refused since: NaN never expired, 1e400 never would)
            return None
        sub, name = claims.get("sub"), claims.get("name", claims.get("sub"))
        if not isinstance(sub, str) or not isinstance(name, str) or not sub or len(sub) > 128:
            return None
        identity = Identity(sub, name[:64])
        if "nbf" not in claims:
            self.verified[token] = (identity, float(exp))
        return identity


def outcome(check: Any, token: str) -> object:
    """What a check returns, or the type of what it raises (a lone surrogate: UnicodeError)."""
    try:
        return check(token)
    except Exception as e:  # compared, not hidden: both sides must raise the same
        return type(e)


def fresh(secret: str = SECRET) -> Tokens:
    return Tokens(secret, ttl=HOUR, clock=lambda: NOW)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signature(signed: str, secret: str = SECRET, digest: Any = hashlib.sha256) -> str:
    return b64(hmac.new(secret.encode(), signed.encode(), digest).digest())


def token_of(header: object, payload: object, secret: str = SECRET) -> str:
    signed = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    return signed + "." + signature(signed, secret)


def assert_same(token: str, secret: str = SECRET) -> object:
    """Both checks reach the same verdict on ``token``, then again (from their caches)."""
    tokens, before = fresh(secret), Reference(secret)
    expected = outcome(before.verify, token)
    assert outcome(tokens.verify, token) == expected, token
    assert outcome(tokens.verify, token) == outcome(before.verify, token), token
    return expected


# ------------------------------------------------------------------- strategies

ODD = st.sampled_from(
    [None, True, False, 0, 1, -1, 1.5, "", "x", "123", [], ["a"], {}, {"k": 1}, 2**64, -(2**64)]
)
TIME = st.sampled_from(
    [NOW - HOUR, NOW + HOUR, int(NOW) - HOUR, int(NOW) + HOUR, NOW, int(NOW), 0, -1, 10**20]
)
TEXT = st.text(max_size=6) | st.sampled_from(["u_ada", "x" * 128, "x" * 129, "é", "\ud800"])
HEADER = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "HS256", "HS256", "HS512", "none", "hs256", ""]) | ODD},
    optional={
        "typ": st.sampled_from(["JWT", "jwt"]) | ODD,
        "kid": TEXT | ODD,
        "crit": st.sampled_from([["b64"], ["exp"], [], "b64", [1]]) | ODD,
        "b64": st.booleans() | ODD,
        "cty": TEXT,
    },
)
PAYLOAD = st.fixed_dictionaries(
    {},
    optional={
        "sub": TEXT | ODD,
        "name": TEXT | st.just("n" * 100) | ODD,
        "exp": TIME | ODD,
        "iat": TIME | ODD | st.sampled_from(["abc", str(int(NOW) + HOUR)]),
        "nbf": TIME | ODD,
        "aud": TEXT | ODD | st.just(["a", "b"]),
        "jti": TEXT | ODD,
        "iss": TEXT | ODD,
        "extra": TEXT | ODD,
    },
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
# JSON that json and orjson read differently, or that only one of them reads
ODD_JSON = st.sampled_from(
    [
        b'{"alg":"HS256","alg":"none"}',
        b'{"alg":"none","alg":"HS256"}',
        b'{"sub":"u","exp":1e400}',
        b'{"sub":"u","exp":NaN}',
        b'{"sub":"u","exp":Infinity}',
        b'{"sub":"u","exp":18446744073709551616000}',
        b'{"sub":"u","exp":99999999999,"iat":-18446744073709551616000}',
        b'{"sub":"u","exp":99999999999,"iat":18446744073709551616000}',
        b'{"sub":"\\ud800","exp":99999999999}',
        b'{"sub":"\xed\xa0\x80","exp":99999999999}',
        b'\xef\xbb\xbf{"sub":"u","exp":99999999999}',
        b'{"sub":"u","exp":99999999999}\x00',
        b' {"sub" : "u" , "exp" : 99999999999.5 } \n',
        b'{"sub":"u\x01","exp":99999999999}',
        b"\xff",
        b"",
        b"[]",
        b'"x"',
        b"1",
        b"[" * 5000 + b"]" * 5000,
    ]
)


def as_json(value: object) -> bytes:
    return json.dumps(value).encode()  # (NaN and Infinity as Python's json writes them)


HEADER_BYTES = (
    HEADER.map(as_json)
    | JSON_VALUE.map(as_json)
    | ODD_JSON
    | st.binary(max_size=20)
    | st.just(b'{"alg":"HS256","typ":"JWT"}')
)
PAYLOAD_BYTES = (
    PAYLOAD.map(as_json)
    | JSON_VALUE.map(as_json)
    | ODD_JSON
    | st.binary(max_size=20)
    | st.text(min_size=3000, max_size=3100).map(lambda s: as_json({"sub": "u", "x": s}))
)


def mangle(segment: str, how: str) -> str:
    """A base64url segment made unusual in one of the ways PyJWT has a rule for."""
    if how == "pad1":
        return segment + "="
    if how == "pad2":
        return segment + "=="
    if how == "pad3":
        return segment + "==="
    if how == "unused-bits" and len(segment) % 4 in (2, 3):  # same bytes, not canonical
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]
    if how == "drop-last":
        return segment[:-1]
    if how in JUNK:  # one character in the middle
        return segment[: len(segment) // 2] + how + segment[len(segment) // 2 :]
    if how[1:] in JUNK:  # four, between two quads or at the end: a lax decoder that skips
        at = len(segment) // 8 * 4 if how[0] == "4" else len(segment)  # them reads the rest
        return segment[:at] + how[1:] * 4 + segment[at:]
    return segment


JUNK = ("+", "/", "!", " ", "\n", "é", "\ud800", "=", ".")
MANGLE = st.sampled_from(["pad1", "pad2", "pad3", "unused-bits", "drop-last"]) | (
    st.sampled_from(JUNK).flatmap(lambda c: st.sampled_from([c, "4" + c, "$" + c]))
)


COMMON_HEADER = st.sampled_from(
    [{"alg": "HS256", "typ": "JWT"}, {"typ": "JWT", "alg": "HS256"}, {"alg": "HS256"}]
).map(as_json)
PLAIN_TEXT = st.text(min_size=1, max_size=8) | st.sampled_from(["x" * 128, "x" * 129, "n" * 100])
COMMON_PAYLOAD = st.fixed_dictionaries(
    {"sub": PLAIN_TEXT, "exp": st.sampled_from([int(NOW) + HOUR, NOW + 60.5]) | TIME},
    optional={
        "name": PLAIN_TEXT,
        "iat": st.just(int(NOW) - 5) | TIME,
        "iss": TEXT,
        "extra": JSON_VALUE,
    },
).map(as_json)


def usually(draw: st.DrawFn, common: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """``common`` seven times in ten (and when shrinking), else ``odd``."""
    return draw(common) if draw(st.integers(0, 9)) < 7 else draw(odd)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    header = mangle(
        b64(usually(draw, COMMON_HEADER, HEADER_BYTES)), usually(draw, st.just(""), MANGLE)
    )
    payload = mangle(
        b64(usually(draw, COMMON_PAYLOAD, PAYLOAD_BYTES)), usually(draw, st.just(""), MANGLE)
    )
    signed = header + "." + payload
    key = usually(draw, st.just(SECRET), st.just(OTHER))
    digest = usually(draw, st.just(hashlib.sha256), st.just(hashlib.sha512))
    try:
        sig = signature(signed, key, digest)
    except UnicodeEncodeError:  # a lone surrogate: nobody can sign it
        sig = signature("x", key, digest)
    how = usually(
        draw,
        st.just(""),
        st.sampled_from(["empty", "flip", "pad1", "pad2", "unused-bits", "extra"]),
    )
    if how == "empty":
        sig = ""
    elif how == "flip":
        sig = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]
    elif how == "extra":
        sig = sig + "." + sig
    else:
        sig = mangle(sig, how)
    return signed + "." + sig


# ------------------------------------------------------------------- properties


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens())
@example(Tokens(SECRET, ttl=HOUR).issue("u_ada", "Ada"))
def test_the_fast_check_agrees_with_pyjwt(token: str) -> None:
    verdict = outcome(fresh()._claims, token)
    event(f"fast check: {'claims' if isinstance(verdict, dict) else verdict}")
    event(f"verdict: {'accepted' if isinstance(assert_same(token), Identity) else 'refused'}")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | st.text(alphabet="ab.=_-", max_size=60))
def test_it_agrees_on_any_string(token: str) -> None:
    assert_same(token)


# ------------------------------------------------------------------- explicit cases

LATER, EARLIER = int(NOW) + HOUR, int(NOW) - HOUR
HS = {"alg": "HS256", "typ": "JWT"}
BASE = {"sub": "u_ada", "name": "Ada", "iat": EARLIER, "exp": LATER}
ADA = Identity("u_ada", "Ada")


def test_our_own_tokens_take_the_fast_path() -> None:
    tokens = fresh()
    token = tokens.issue("u_ada", "Ada")
    assert isinstance(tokens._claims(token), dict)  # PyJWT is not asked
    assert tokens.verify(token) == ADA
    forged = token_of(HS, BASE, OTHER)
    assert tokens._claims(forged) is _Verdict.FORGED  # refused before any JSON is read
    assert assert_same(forged) is None


@pytest.mark.parametrize(
    ("header", "payload", "expected"),
    [
        (HS, BASE, ADA),
        ({"alg": "HS256"}, BASE, ADA),
        ({"alg": "HS256", "typ": 7}, BASE, ADA),  # PyJWT does not look at typ
        ({"alg": "none"}, BASE, None),
        ({"alg": "HS512"}, BASE, None),
        ({"alg": "HS256", "kid": "k1"}, BASE, ADA),  # beyond {alg, typ}: PyJWT's verdict
        ({"alg": "HS256", "kid": 1}, BASE, None),
        ({"alg": "HS256", "crit": ["exp"], "exp": 1}, BASE, None),
        ({"alg": "HS256", "crit": ["b64"], "b64": False}, BASE, None),
        (HS, {**BASE, "nbf": EARLIER}, ADA),
        (HS, {**BASE, "nbf": LATER}, None),
        (HS, {**BASE, "aud": "lastra"}, None),
        (HS, {**BASE, "aud": ""}, ADA),  # PyJWT: an empty aud is no aud
        (HS, {**BASE, "jti": 5}, None),
        (HS, {**BASE, "iat": LATER}, None),  # issued in the future by the wall clock
        (HS, {**BASE, "iat": "123"}, ADA),  # PyJWT takes int("123")
        (HS, {**BASE, "iat": True}, ADA),
        (HS, {**BASE, "iat": "abc"}, None),
        (HS, {**BASE, "iat": None}, None),
        (HS, {**BASE, "exp": True}, None),
        (HS, {**BASE, "exp": float(LATER) + 0.5}, ADA),
        (HS, {**BASE, "exp": EARLIER}, None),
        (HS, {**BASE, "exp": NOW}, None),
        (HS, {"sub": "u_ada", "exp": LATER}, Identity("u_ada", "u_ada")),
        (HS, {"sub": "u_ada"}, None),
        (HS, {"exp": LATER}, None),
        (HS, {**BASE, "sub": "x" * 129}, None),
        (HS, {**BASE, "sub": 5}, None),
        (HS, {**BASE, "name": "n" * 100}, Identity("u_ada", "n" * 64)),
        (HS, {**BASE, "name": 5}, None),
        (HS, ["u_ada"], None),
        ([HS], BASE, None),
    ],
)
def test_explicit_cases(header: object, payload: object, expected: Identity | None) -> None:
    assert assert_same(token_of(header, payload)) == expected


def test_base64_and_segments() -> None:
    good = token_of(HS, BASE)
    h, p, s = good.split(".")
    assert len(s) == 43
    assert assert_same(good) == ADA
    assert assert_same(f"{h}.{p}.{s}=") == ADA  # PyJWT accepts the one padding '='
    assert assert_same(f"{h}.{p}.{s}==") is None
    assert assert_same(f"{h}.{p}.{mangle(s, 'unused-bits')}") is None  # same bytes
    assert assert_same(f"{h}.{p}.{s}.{s}") is None
    assert assert_same(f"{h}.{p}") is None
    assert assert_same(f"{h}.{p}.") is None
    assert assert_same(f"{h}.{p}.{s}\n") is None
    assert assert_same("") is None
    assert assert_same("x" * 5000) is None
    for how in ("pad1", "pad2", "unused-bits", "+", "é", "\ud800"):
        signed = mangle(h, how) + "." + p
        try:
            assert_same(signed + "." + signature(signed))
        except UnicodeEncodeError:
            assert_same(signed + "." + s)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub":"u_ada","exp":1e400}',  # json: inf (refused: it would never expire); orjson: error
        b'{"sub":"u_ada","exp":Infinity}',
        b'{"sub":"u_ada","exp":NaN}',  # refused: NaN compares as never expired
        b'\xef\xbb\xbf{"sub":"u_ada","exp":99999999999}',  # a BOM, which json skips
        b'{"sub":"\\ud800","exp":99999999999}',
        b'{"sub":"u_ada","exp":184467440737095516160000}',  # orjson: a float
    ],
)
def test_json_that_only_python_reads_goes_to_pyjwt(payload: bytes) -> None:
    signed = b64(json.dumps(HS).encode()) + "." + b64(payload)
    assert_same(signed + "." + signature(signed))


@pytest.mark.parametrize("payload", [b'{"sub":"u_ada","exp":1e400}', b'{"sub":"u_ada","exp":NaN}'])
def test_an_exp_that_never_comes_is_refused(payload: bytes) -> None:
    signed = b64(json.dumps(HS).encode()) + "." + b64(payload)
    token = signed + "." + signature(signed)
    assert Tokens(SECRET, 3600, clock=lambda: NOW).verify(token) is None


def test_a_secret_pyjwt_refuses_refuses_every_token() -> None:
    jwk = '{"kty": "oct", "k": "c2VjcmV0LTAxMjM0NTY3ODlhYmNkZWYwMTIz"}'
    signed = b64(json.dumps(HS).encode()) + "." + b64(json.dumps(BASE).encode())
    token = signed + "." + signature(signed, jwk)
    assert assert_same(token, jwk) is None
