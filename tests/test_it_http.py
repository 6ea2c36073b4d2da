"""HTTP surface: sessions, tokens, the transport endpoint, error bodies (PROTOCOL §1, §8)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from support.clients import aio, async_http, post, session, sync_http, uniq
from support.server import Server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with sync_http() as client:
        yield client


def assert_error_body(resp: httpx.Response, status: int, code: str) -> None:
    """The body of an HTTP error is the ``error`` data itself, not FastAPI's ``detail``."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert "detail" not in body, body


def test_healthz(srv: Server, http: httpx.Client) -> None:
    resp = http.get(f"{srv.http}/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_session_issues_identity_and_trims_name(srv: Server, http: httpx.Client) -> None:
    name = uniq("Ada")
    resp = http.post(f"{srv.http}/api/session", json={"userName": f"  {name} \t"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["userName"] == name
    assert isinstance(body["userId"], str) and body["userId"]
    assert isinstance(body["token"], str) and body["token"]
    assert body["transport"] == "ws"  # default TRANSPORT=ws
    assert "chat.ws" in body["urls"]["ws"]
    assert "chat-stream" in body["urls"]["sse"]


def test_session_user_ids_are_issued_per_session(srv: Server) -> None:
    a = session(srv.http, "Same Name")
    b = session(srv.http, "Same Name")
    assert a.userId != b.userId
    assert a.token != b.token


def test_session_accepts_64_characters(srv: Server) -> None:
    name = "x" * 64
    assert session(srv.http, f" {name} ").userName == name


def test_session_sets_httponly_strict_cookie(srv: Server, http: httpx.Client) -> None:
    resp = http.post(f"{srv.http}/api/session", json={"userName": uniq()})
    assert resp.status_code == 200
    cookie = next(
        (c for c in resp.headers.get_list("set-cookie") if c.startswith("lastra_token=")), None
    )
    assert cookie is not None, resp.headers
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs
    assert "samesite=strict" in attrs
    assert cookie.split(";")[0] == f"lastra_token={resp.json()['token']}"


@pytest.mark.parametrize(
    "body",
    [
        {"userName": ""},
        {"userName": "   "},
        {"userName": "x" * 65},
        {"userName": "nul\x00name"},
        {"userName": "bell\x07"},
        {"userName": "line\nbreak"},
        {"userName": 42},
        {"userName": None},
        {},
    ],
    ids=["empty", "blank", "65-chars", "nul", "bell", "newline", "number", "null", "missing"],
)
def test_session_rejects_bad_names_with_422(
    srv: Server, http: httpx.Client, body: dict[str, object]
) -> None:
    resp = http.post(f"{srv.http}/api/session", json=body)
    assert_error_body(resp, 422, "invalid")


def test_session_rejects_malformed_json(srv: Server, http: httpx.Client) -> None:
    resp = http.post(
        f"{srv.http}/api/session",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert_error_body(resp, 400, "bad_json")


def test_session_with_valid_token_keeps_the_user(srv: Server, http: httpx.Client) -> None:
    first = session(srv.http, uniq("Ada"))
    resp = http.post(
        f"{srv.http}/api/session", json={"userName": first.userName}, headers=first.bearer
    )
    assert resp.status_code == 200
    assert resp.json()["userId"] == first.userId


def test_transport_endpoint(srv: Server, http: httpx.Client) -> None:
    user = session(srv.http)
    resp = http.get(f"{srv.http}/api/transport", headers=user.bearer)
    assert resp.status_code == 200
    body = resp.json()
    assert body["transport"] == "ws" == user.transport
    assert isinstance(body["reason"], str)


def bad_tokens(srv: Server, user_id: str, good: str) -> dict[str, str]:
    """Tokens nobody should be able to act with."""
    now = int(time.time())
    claims = {"sub": user_id, "name": "Mallory", "iat": now, "exp": now + 3600}
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    secret = srv.env["LASTRA_SECRET"]
    head, payload, sig = good.split(".")
    return {
        "garbage": "not-a-token",
        "other-secret": jwt.encode(claims, "another-secret-entirely-0123456789", "HS256"),
        "alg-none": jwt.encode(claims, None, algorithm="none"),
        "expired": jwt.encode(expired, secret, "HS256"),
        "tampered": f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
    }


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "other-secret", "alg-none", "expired", "tampered"]
)
def test_transport_endpoint_requires_a_valid_token(
    srv: Server, http: httpx.Client, kind: str
) -> None:
    user = session(srv.http)
    headers = {}
    if kind != "missing":
        token = bad_tokens(srv, user.userId, user.token)[kind]
        headers = {"Authorization": f"Bearer {token}"}
    resp = http.get(f"{srv.http}/api/transport", headers=headers)
    assert_error_body(resp, 401, "not_authenticated")


@aio
async def test_post_without_token_is_401(srv: Server) -> None:
    resp = await post(srv.http, "/api/chat-message", {"text": "hi", "clientId": "c1"})
    assert_error_body(resp, 401, "not_authenticated")
    resp = await post(
        srv.http, "/api/chat-message", {"text": "hi", "clientId": "c1"}, token="nope.nope.nope"
    )
    assert_error_body(resp, 401, "not_authenticated")


@aio
async def test_sse_stream_without_token_is_401(srv: Server) -> None:
    async with async_http() as http:
        resp = await http.get(f"{srv.http}/api/chat-stream")
        assert_error_body(resp, 401, "not_authenticated")
        resp = await http.get(
            f"{srv.http}/api/chat-stream", headers={"Authorization": "Bearer junk"}
        )
        assert_error_body(resp, 401, "not_authenticated")
