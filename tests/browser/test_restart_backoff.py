"""After a 1012 (server restarting) the bundled client comes back within a short window.

A restart sends every client 1012 at once; the new process is up in about a second. The
first 3 attempts after it wait a full-jitter delay within ``reconnectInterval`` (not a
window that doubles with each refusal, which left clients waiting seconds for a server
that was already back); later ones back off as usual, the doubling starting over from the
base (a restart slower than the window costs 1, 2, 4 windows more, not 8, 16, 30).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import WebSocketRoute

pytestmark = [pytest.mark.browser]

BASE = 400  # reconnectInterval, ms


def test_a_1012_is_followed_by_three_quick_attempts_then_a_backoff_from_the_base(
    server: Any, browser: Any
) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    sockets: list[int] = []

    def restart_then_refuse(route: WebSocketRoute) -> None:
        sockets.append(1)
        if len(sockets) > 1:  # the new process is not up yet: refuse
            route.close(code=1013, reason="store-unavailable")
            return
        upstream = route.connect_to_server()

        def from_server(message: str | bytes) -> None:
            route.send(message)
            if isinstance(message, str) and '"type":"ready"' in message.replace(" ", ""):
                route.close(code=1012, reason="server-restart")

        upstream.on_message(from_server)

    page.route_web_socket("**/api/chat.ws", restart_then_refuse)
    page.goto(server.http + "/healthz")
    delays = page.evaluate(
        """async (base) => {
          Math.random = () => 1; // the top of each jitter window: the window itself
          const { LastraClient } = await import('/lastra-client.js');
          const c = new LastraClient({ userName: 'Restarted', transport: 'ws',
                                       reconnectInterval: base });
          const delays = [];
          await new Promise((resolve) => c.on('reconnecting', (d) => {
            delays.push(d.delay);
            if (delays.length === 6) resolve();
          }));
          c.destroy();
          return delays;
        }""",
        BASE,
    )
    assert delays == [BASE, BASE, BASE, BASE, BASE * 2, BASE * 4]
    ctx.close()
