"""A small Vue 3 app built on ``useLastraChat`` (``/lastra-vue.js``), in Chromium.

Vue's runtime browser build comes from ``clients/js/node_modules`` (installed from the
lockfile by ``make node-deps``) and is served to the page by Playwright on the server's own
origin, behind an import map (which is why the context bypasses the app's CSP, which allows
no inline script); ``/lastra-vue.js`` and ``/lastra-client.js`` come from the app. The app
chats with the bundled page and shows ``status`` / ``isConnected`` / ``error`` across a
server restart, on each transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Route, expect
from support.node_deps import VUE_BROWSER_BUILD, require_node_deps

from .conftest import ChatPage, watch

pytestmark = [pytest.mark.browser]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Vue on Lastra</title>
<script type="importmap">{"imports": {"vue": "/vue-test/vue.js"}}</script>
<script type="module" src="/vue-test/app.js"></script>
</head><body><div id="app"></div></body></html>
"""

APP = Path(__file__).with_name("vue_app.js")


@pytest.fixture
def open_vue(browser: Any) -> Iterator[Any]:
    """``open_vue(server, name)`` → the page running the Vue app as ``name`` (one per test)."""
    require_node_deps()
    ctx = browser.new_context(bypass_csp=True)
    chat = ChatPage(page=ctx.new_page(), context=ctx)
    watch(chat)

    def serve(route: Route) -> None:
        vue = route.request.url.endswith("/vue-test/vue.js")
        route.fulfill(path=str(VUE_BROWSER_BUILD if vue else APP), content_type="text/javascript")

    def factory(server: Any, name: str) -> Any:
        chat.page.route("**/vue-test/*.js", serve)
        # A document the server itself sent, so Chromium counts the page as loopback (local
        # network access checks) and same-origin; then the test page is written into it.
        chat.page.goto(f"{server.http}/healthz?name={name}")
        chat.page.set_content(PAGE)
        return chat.page

    yield factory
    ctx.close()
    assert not chat.problems, "browser problems:\n" + "\n".join(chat.problems)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_vue_app_chats_and_shows_status_across_a_restart(
    make_server: Any, open_vue: Any, open_chat: Any, transport: str
) -> None:
    srv = make_server(TRANSPORT=transport, BACKEND="sqlite")
    vue = open_vue(srv, "Vue Ada")
    status, connected = vue.get_by_test_id("status"), vue.get_by_test_id("connected")
    expect(status).to_have_text("OPEN")
    expect(connected).to_have_text("true")
    expect(vue.get_by_test_id("transport")).to_have_text(transport)
    expect(vue.get_by_test_id("error")).to_have_text("")

    bea = open_chat(srv, "Bea")
    bea.wait_connected(transport)

    def vue_sends(text: str) -> None:
        vue.get_by_test_id("draft").fill(text)
        vue.get_by_test_id("send").click()
        bea.expect_once(text)

    vue_sends("hello from Vue")
    bea.send("hello back to Vue")
    expect(vue.get_by_test_id("msg").filter(has_text="Bea: hello back to Vue")).to_have_count(1)

    srv.stop()
    expect(connected).to_have_text("false")
    expect(status).not_to_have_text("OPEN")
    expect(vue.get_by_test_id("send")).to_be_disabled()
    expect(vue.get_by_test_id("error")).not_to_have_text("")

    srv.start()
    expect(status).to_have_text("OPEN")
    expect(connected).to_have_text("true")
    expect(vue.get_by_test_id("error")).to_have_text("")
    bea.wait_connected(transport)

    seen = vue.evaluate("window.seen")
    statuses = seen["status"]
    # autoConnect: already CONNECTING when useLastraChat returns.
    assert statuses[:2] == ["CONNECTING", "OPEN"], statuses
    assert statuses[-1] == "OPEN" and "CLOSED" in statuses[2:-1], statuses
    assert set(statuses) <= {"CLOSED", "CONNECTING", "OPEN"}
    assert seen["isConnected"] == [False, True, False, True]

    vue_sends("after the restart")
    bea.send("welcome back")
    msgs = vue.get_by_test_id("msg")
    expect(msgs.filter(has_text="Bea: welcome back")).to_have_count(1)
    # The history survived (SQLite) and nothing was shown twice after the reconnect.
    expect(msgs).to_have_text(
        [
            "Vue Ada: hello from Vue",
            "Bea: hello back to Vue",
            "Vue Ada: after the restart",
            "Bea: welcome back",
        ]
    )


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_vue_error_ref_and_unmount(
    make_server: Any, open_vue: Any, open_chat: Any, transport: str
) -> None:
    """A refused chat shows in `error` (WebSocket: an `error` event; SSE: the POST's 422), and
    unmounting the component closes the connection the composable opened."""
    srv = make_server(TRANSPORT=transport)
    bea = open_chat(srv, "Bea")
    vue = open_vue(srv, "Vue Cy")
    expect(vue.get_by_test_id("connected")).to_have_text("true")
    expect(bea.person("Vue Cy")).to_have_count(1)

    vue.get_by_test_id("draft").fill("   ")
    vue.get_by_test_id("send").click()
    expect(vue.get_by_test_id("error")).to_have_text("invalid: data.text must not be empty")

    vue.evaluate("window.vueApp.unmount()")
    expect(bea.person("Vue Cy")).to_have_count(0)
