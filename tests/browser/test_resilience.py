"""The page keeps chatting through bad networks: offline, server restarts, blocked
WebSockets, dead connections, rejected sends, and the seventh SSE tab."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import WebSocketRoute, expect

from .conftest import create_session, post_chat

pytestmark = [pytest.mark.browser]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_offline_sends_are_queued_and_delivered_once_in_order(
    make_server: Any, open_chat: Any, transport: str
) -> None:
    srv = make_server(TRANSPORT=transport)
    ada = open_chat(srv, "Ada")
    ada.wait_connected(transport)
    bea = open_chat(srv, "Bea")
    cy = open_chat(srv, "Cy")
    ada.send("before the tunnel")
    bea.expect_once("before the tunnel")

    ada.context.set_offline(True)
    expect(ada.banner).to_have_attribute("data-state", "offline")
    sent = ["offline one", "offline two", "offline three"]
    for text in sent:
        ada.send(text)
        expect(ada.message(text)).to_have_attribute("data-state", "sending")
    expect(ada.banner).to_contain_text("3 messages queued")
    # Nothing went out while offline.
    expect(bea.message("offline one")).to_have_count(0)

    ada.context.set_offline(False)
    for page in (bea, cy, ada):
        expect(page.message("offline three")).to_have_count(1)
        for text in sent:
            page.expect_once(text)
        assert page.texts() == ["before the tunnel", *sent]
    for text in sent:
        expect(ada.message(text)).to_have_attribute("data-state", "sent")
    expect(ada.banner).to_be_hidden()


def test_queued_messages_survive_a_reload(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada")
    bea = open_chat(server, "Bea")
    ada.context.set_offline(True)
    expect(ada.banner).to_have_attribute("data-state", "offline")
    ada.send("typed on the train")
    ada.send("and another")
    outbox = ada.page.evaluate("sessionStorage.getItem('lastra.outbox')")
    assert [m["text"] for m in json.loads(outbox)] == ["typed on the train", "and another"]
    ada.context.set_offline(False)
    # Reload before the queue could be flushed... (it may or may not have gone out: the
    # server dedups by clientId, so either way each message appears exactly once).
    ada.page.reload()
    ada.wait_connected()
    for page in (bea, ada):
        expect(page.message("and another")).to_have_count(1)
        page.expect_once("typed on the train")
        assert page.texts() == ["typed on the train", "and another"]


def test_server_restart_under_connected_pages(make_server: Any, open_chat: Any) -> None:
    """Both transports: Ada on WebSocket, Bea forced to SSE; SQLite keeps the history."""
    srv = make_server(BACKEND="sqlite", TRANSPORT="rollout", WS_ROLLOUT_PERCENT="100")
    bea_session = create_session(srv, "Bea")
    srv.stop()
    srv.env["LASTRA_SSE_USERS"] = bea_session["userId"]
    srv.start()
    ada = open_chat(srv, "Ada")
    ada.wait_connected("ws")
    bea = open_chat(srv, session=bea_session)
    bea.wait_connected("sse")
    ada.send("before the restart")
    bea.expect_once("before the restart")
    ada.expect_once("before the restart")

    srv.stop()
    for page in (ada, bea):
        expect(page.banner).to_have_attribute("data-state", "reconnecting")
        expect(page.banner).to_contain_text(re.compile(r"Reconnecting in \d+s"))
    srv.start()
    # Posted the moment the server is up, most likely before the pages are back: they
    # must catch up on it when they resume.
    post_chat(srv, bea_session["token"], "said while you were reconnecting")

    for page, transport in ((ada, "ws"), (bea, "sse")):
        page.wait_connected(transport, timeout=45_000)
        page.expect_once("said while you were reconnecting")
        page.expect_once("before the restart")
        assert page.page.evaluate("window.lastra.recovered") is True
    ada.send("after the restart")
    bea.send("me too")
    for page in (ada, bea):
        expect(page.message("me too")).to_have_count(1)
        page.expect_once("after the restart")
        assert page.texts() == [
            "before the restart",
            "said while you were reconnecting",
            "after the restart",
            "me too",
        ]
        expect(page.banner).to_be_hidden()


def test_transport_is_asked_again_at_each_reconnect(make_server: Any, open_chat: Any) -> None:
    """A rollback of the flag takes effect at the next reconnect, without a 'fallback'."""
    srv = make_server(TRANSPORT="ws")
    ada = open_chat(srv, "Ada")
    ada.wait_connected("ws")
    srv.stop()
    srv.env["LASTRA_TRANSPORT"] = "sse"
    srv.start()
    ada.wait_connected("sse", timeout=45_000)
    assert ada.page.evaluate("window.lastra.fallback") is None
    expect(ada.banner).to_be_hidden()
    bea = open_chat(srv, "Bea")
    ada.send("now on SSE")
    bea.expect_once("now on SSE")


def _close_ws(route: WebSocketRoute) -> None:
    route.close(code=1011, reason="proxy says no")


def _silent_ws(route: WebSocketRoute) -> None:
    """Accept the upgrade and never answer: a proxy that swallows WebSocket traffic."""


BROKEN_WEBSOCKET = """
window.WebSocket = class extends EventTarget {
  constructor(url) {
    super();
    this.url = url; this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      const err = new Event('error'); this.onerror && this.onerror(err);
      const close = new CloseEvent('close', {code: 1006, wasClean: false});
      this.onclose && this.onclose(close);
    }, 20);
  }
  send() { throw new Error('not open'); }
  close() {}
};
window.WebSocket.CONNECTING = 0; window.WebSocket.OPEN = 1;
window.WebSocket.CLOSING = 2; window.WebSocket.CLOSED = 3;
"""


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("upgrade-closed", {"ws-handshake-failed", "ws-closed-before-ready"}),
        ("upgrade-silent", {"ws-open-timeout"}),
        ("handshake-error", {"ws-handshake-failed"}),
    ],
)
def test_blocked_websocket_falls_back_to_sse(
    server: Any, open_chat: Any, how: str, reason: set[str]
) -> None:
    def block(page: Any) -> None:
        if how == "upgrade-closed":
            page.route_web_socket("**/api/chat.ws", _close_ws)
        elif how == "upgrade-silent":
            page.route_web_socket("**/api/chat.ws", _silent_ws)

    ada = open_chat(
        server,
        "Ada",
        before_goto=block,
        init_script=BROKEN_WEBSOCKET if how == "handshake-error" else None,
    )
    ada.wait_connected("sse")
    expect(ada.banner).to_have_attribute("data-state", "fallback")
    expect(ada.banner).to_contain_text("SSE fallback")
    fallback = ada.page.evaluate("window.lastra.fallback")
    assert fallback["from"] == "ws"
    assert fallback["reason"] in reason

    bea = open_chat(server, "Bea")
    bea.wait_connected("ws")
    expect(bea.person("Ada")).to_have_attribute("data-transport", "sse")
    ada.send("through the fallback")
    bea.expect_once("through the fallback")
    bea.send("right back at you")
    ada.expect_once("right back at you")


def test_rejected_send_is_marked_failed_and_can_be_retried(
    make_server: Any, open_chat: Any
) -> None:
    srv = make_server(TRANSPORT="sse")
    ada = open_chat(srv, "Ada")
    bea = open_chat(srv, "Bea")
    refusals = []

    def refuse(route: Any) -> None:
        body = route.request.post_data_json
        refusals.append(body)
        route.fulfill(
            status=503,
            content_type="application/json",
            body=json.dumps(
                {"code": "internal", "message": "try again later", "ref": body.get("ref")}
            ),
        )

    ada.page.route("**/api/chat-message", refuse)
    ada.send("first try fails")
    failed = ada.message("first try fails")
    expect(failed).to_have_attribute("data-state", "failed")
    expect(failed.get_by_test_id("message-state")).to_contain_text("try again later")
    ada.page.unroute("**/api/chat-message")
    failed.get_by_test_id("retry").click()
    expect(ada.message("first try fails")).to_have_attribute("data-state", "sent")
    bea.expect_once("first try fails")
    ada.expect_once("first try fails")
    # The retry reused the original clientId.
    assert refusals and refusals[0]["clientId"]


def test_seventh_sse_tab_is_told_why_it_waits(
    make_server: Any, open_chat: Any, browser: Any
) -> None:
    srv = make_server(TRANSPORT="sse")
    ctx = browser.new_context()
    try:
        tabs = [
            open_chat(srv, "Ada" if i == 0 else None, context=ctx, wait=False) for i in range(6)
        ]
        for tab in tabs:
            tab.wait_connected("sse")
        seventh = open_chat(srv, context=ctx, wait=False)
        expect(seventh.banner).to_have_attribute("data-state", "tab-limit")
        expect(seventh.banner).to_contain_text("HTTP/2")
        expect(seventh.pill).not_to_have_attribute("data-state", "open")
        # The other tabs still chat: their POSTs do not queue behind the streams.
        tabs[0].send("six tabs and counting")
        tabs[5].expect_once("six tabs and counting")
        # Closing one tab frees a connection; the seventh gets it and carries on.
        tabs[1].page.close()
        seventh.wait_connected("sse")
        expect(seventh.banner).to_be_hidden()
        seventh.expect_once("six tabs and counting")
    finally:
        ctx.close()
