"""Tokens expire (LASTRA_TOKEN_TTL): the page renews its token before expiry, keeps its
userId, and keeps chatting on both transports well past two lifetimes; a refused token is
refreshed once and the page reconnects."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import create_session

pytestmark = [pytest.mark.browser]

TTL = 5

WATCH_SESSIONS = """() => {
  window.__sessions = [];
  lastra.on('session', (d) => window.__sessions.push({ ...d, at: Date.now() }));
}"""


def refreshed(server: Any, session: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(
        f"{server.http}/api/session",
        json={"userName": session["userName"]},
        headers={"Authorization": f"Bearer {session['token']}"},
        timeout=10,
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


def transport_status(server: Any, token: str) -> int:
    resp = httpx.get(
        f"{server.http}/api/transport", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return resp.status_code


def test_pages_refresh_their_tokens_and_keep_chatting_past_two_lifetimes(
    make_server: Any, open_chat: Any
) -> None:
    # Bea is forced to SSE (every POST checks the token); Ada is on WebSocket (the token is
    # checked at each connect). Bea's session is made with a long-lived token, then renewed
    # under TOKEN_TTL=5 so her page starts with a fresh 5-second token and a known userId.
    srv = make_server(TRANSPORT="rollout", WS_ROLLOUT_PERCENT="100")
    first = create_session(srv, "Bea")
    srv.stop()
    srv.env["LASTRA_SSE_USERS"] = first["userId"]
    srv.env["LASTRA_TOKEN_TTL"] = str(TTL)
    srv.start()
    bea_session = refreshed(srv, first)
    assert bea_session["userId"] == first["userId"]
    assert bea_session["expiresIn"] == TTL

    ada = open_chat(srv, "Ada")
    ada.wait_connected("ws")
    bea = open_chat(srv, session=bea_session)
    bea.wait_connected("sse")
    started = time.monotonic()
    ids = {}
    tokens = {}
    for chat in (ada, bea):
        chat.page.evaluate(WATCH_SESSIONS)
        ids[chat.page] = chat.page.evaluate("lastra.userId")
        tokens[chat.page] = chat.page.evaluate("lastra._token")
    assert ids[bea.page] == first["userId"]
    ada.send("before any refresh")
    bea.expect_once("before any refresh")

    # Three renewals each (a quarter of the lifetime ahead of expiry) take over 2 x TTL.
    for chat in (ada, bea):
        chat.page.wait_for_function(
            "() => window.__sessions.filter((s) => s.refreshed).length >= 3", timeout=30_000
        )
    assert time.monotonic() - started > 2 * TTL
    for chat in (ada, bea):
        sessions = chat.page.evaluate("window.__sessions")
        assert {s["userId"] for s in sessions} == {ids[chat.page]}
        assert chat.page.evaluate("lastra.userId") == ids[chat.page]
        # The page's first token has expired by now; the server refuses it.
        assert transport_status(srv, tokens[chat.page]) == 401
        assert transport_status(srv, chat.page.evaluate("lastra._token")) == 200
        expect(chat.banner).to_be_hidden()

    # Still chatting: Bea's POSTs carry the renewed token.
    bea.send("from SSE after two lifetimes")
    ada.send("from WebSocket after two lifetimes")
    for chat in (ada, bea):
        chat.expect_once("from SSE after two lifetimes")
        chat.expect_once("from WebSocket after two lifetimes")
    expect(bea.message("from SSE after two lifetimes")).to_have_attribute("data-state", "sent")

    # Reconnecting with the renewed token keeps the identity (and the transport).
    for chat, transport in ((ada, "ws"), (bea, "sse")):
        chat.context.set_offline(True)
        expect(chat.banner).to_have_attribute("data-state", "offline")
        chat.context.set_offline(False)
        chat.wait_connected(transport)
        assert chat.page.evaluate("lastra.userId") == ids[chat.page]
    ada.send("after reconnecting")
    bea.expect_once("after reconnecting")
    assert ada.texts() == bea.texts()
    expect(ada.person("Bea")).to_have_count(1)
    expect(ada.person("Ada")).to_have_count(1)


def test_a_refused_token_is_refreshed_once_and_the_page_reconnects(
    server: Any, open_chat: Any
) -> None:
    """A token the server refuses (here: a forged signature, as after a secret change) gets
    401 from GET /api/transport: the page renews it once (a refused token buys a new
    identity) and connects, instead of failing or looping."""
    real = create_session(server, "Cleo")
    head, payload, _sig = real["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["exp"] > time.time() + 3600  # not expired: only the server can tell
    forged = {**real, "token": f"{head}.{payload}.{'A' * 43}"}
    assert transport_status(server, forged["token"]) == 401

    posts: list[str] = []
    cleo = open_chat(
        server,
        session=forged,
        before_goto=lambda page: page.on(
            "request",
            lambda r: posts.append(r.url) if r.url.endswith("/api/session") else None,
        ),
    )
    cleo.wait_connected("ws")
    assert len(posts) == 1
    user_id = cleo.page.evaluate("lastra.userId")
    assert user_id != real["userId"]
    stored = json.loads(cleo.page.evaluate("localStorage.getItem('lastra.session')"))
    assert stored["userId"] == user_id
    assert transport_status(server, stored["token"]) == 200
    cleo.send("back in")
    cleo.expect_once("back in")
