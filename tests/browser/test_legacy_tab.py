"""An SSE-era tab in Chromium (LASTRA_LEGACY_WIRE) chatting with the bundled WebSocket page.

The old tab is a page on the server's origin (served by Playwright's router, so nothing
test-only ships in app/static) that makes exactly the old client's requests: ``GET
/api/bots``, ``new EventSource('/api/chat-stream?userId=…&userName=…')`` with the old
event names, and ``fetch`` POSTs of JSON with default credentials (ofetch's ``$fetch``).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, expect

pytestmark = [pytest.mark.browser]

OLD_TAB = """<!doctype html><meta charset="utf-8"><title>old tab</title><body><script>
const userId = 'user-' + Date.now() + '-' + Math.random().toString(36).slice(2, 9);
const userName = 'Olga';
const post = (path, body) => fetch(path, {method: 'POST',
  headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})
  .then(async (r) => ({status: r.status, body: await r.json().catch(() => null)}));
window.old = {userId, got: [], ready: null, opens: 0,
  say: (content) => post('/api/chat-message', {userId, userName, content}),
  sayAs: (other, content) => post('/api/chat-message', {userId: other, userName, content}),
  clear: () => post('/api/chat-clear', {userName})};
fetch('/api/bots').then((r) => r.json()).then((bots) => {
  window.old.bots = bots.data;
  const es = new EventSource('/api/chat-stream?' + new URLSearchParams({userId, userName}));
  for (const name of ['history', 'message', 'user-list', 'typing', 'ai-start', 'ai-chunk',
      'ai-complete', 'ai-error', 'clear', 'bot-state', 'bot-toggle', 'webrtc-signal', 'ping']) {
    es.addEventListener(name, (e) => window.old.got.push([name, JSON.parse(e.data)]));
  }
  es.onopen = () => {
    window.old.opens += 1;
    post('/api/chat-ready', {userId}).then((r) => { window.old.ready = r.status; });
  };
});
</script>"""


def got(page: Any, name: str) -> list[Any]:
    result: list[Any] = page.evaluate(
        "(name) => window.old.got.filter(([n]) => n === name).map(([, d]) => d)", name
    )
    return result


def test_old_tab_chats_with_the_websocket_page(
    make_server: Any, open_chat: Any, browser: Browser
) -> None:
    srv = make_server(LEGACY_WIRE="true")
    ada = open_chat(srv, "Ada")
    ada.wait_connected("ws")

    ctx = browser.new_context()
    try:
        ctx.route(
            srv.http + "/old-tab.html",
            lambda route: route.fulfill(status=200, content_type="text/html", body=OLD_TAB),
        )
        old = ctx.new_page()
        old.goto(srv.http + "/old-tab.html")
        old.wait_for_function("window.old && window.old.ready !== null", timeout=15_000)
        user_id = old.evaluate("window.old.userId")

        # The cookie binding: the EventSource response's Set-Cookie was stored (HttpOnly,
        # SameSite=Strict) and went with chat-ready, the first POST, which needs it.
        assert old.evaluate("window.old.ready") == 200
        cookies = {c["name"]: c for c in ctx.cookies(srv.http + "/api/chat-message")}
        bound = cookies[f"lastra_legacy_{user_id}"]
        assert bound["httpOnly"] is True and bound["sameSite"] == "Strict"
        assert bound["path"] == "/api"
        assert "lastra_legacy" not in old.evaluate("document.cookie")
        assert old.evaluate("window.old.bots.length") > 0

        # One presence: each side lists the other.
        expect(ada.person("Olga")).to_be_visible()
        old.wait_for_function(
            "window.old.got.some(([n, d]) => n === 'user-list'"
            " && d.some((u) => u.userName === 'Ada'))"
        )

        # Old tab -> WebSocket page, and the old reply shape.
        sent = old.evaluate("window.old.say('Hello from an SSE-era tab')")
        assert sent["status"] == 200 and sent["body"]["success"] is True
        ada.expect_once("Hello from an SSE-era tab")

        # WebSocket page -> old tab, as an old Msg.
        ada.send("Hello, old tab")
        old.wait_for_function(
            "window.old.got.some(([n, d]) => n === 'message' && d.content === 'Hello, old tab')"
        )
        msg = next(m for m in got(old, "message") if m["content"] == "Hello, old tab")
        assert msg["userName"] == "Ada" and msg["type"] == "user"
        assert not [m for m in got(old, "message") if m["content"] == "Hello from an SSE-era tab"]

        # The binding holds: this browser cannot post as another tab.
        other = "user-1726000000000-k3j9x2a"
        refused = old.evaluate("([id, t]) => window.old.sayAs(id, t)", [other, "spoof"])
        assert refused["status"] == 403

        # A clear from the old tab reaches the WebSocket page.
        assert old.evaluate("window.old.clear()")["status"] == 200
        expect(ada.message("Hello, old tab")).to_have_count(0)
        old.wait_for_function("window.old.got.some(([n]) => n === 'clear')")

        # A restart (a deploy): EventSource comes back by itself, and the cookie still binds.
        srv.restart()
        old.wait_for_function("window.old.opens >= 2", timeout=20_000)
        ada.wait_connected("ws", timeout=20_000)
        again = old.evaluate("window.old.say('Still here after the restart')")
        assert again["status"] == 200, again
        ada.expect_once("Still here after the restart")
    finally:
        ctx.close()
