"""The bundled page in a real Chromium: two transports in one room, typing, presence."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import rollout_server

pytestmark = [pytest.mark.browser]


def test_sse_and_websocket_pages_chat_both_ways(make_server: Any, open_chat: Any) -> None:
    srv, sessions = rollout_server(make_server, sse=("Bea",))
    bea_session = sessions["Bea"]
    ada = open_chat(srv, "Ada")
    ada.wait_connected("ws")
    bea = open_chat(srv, session=bea_session)
    bea.wait_connected("sse")

    # Presence, with each user's transport.
    expect(ada.person("Bea")).to_have_attribute("data-transport", "sse")
    expect(ada.person("Ada")).to_have_attribute("data-transport", "ws")
    expect(bea.person("Ada")).to_have_attribute("data-transport", "ws")
    expect(bea.person("Bea").get_by_test_id("transport")).to_have_text("SSE")

    # Typing, both ways.
    ada.input.press_sequentially("hel")
    expect(bea.page.get_by_test_id("typing")).to_have_text("Ada is typing…")
    ada.input.fill("")
    ada.input.dispatch_event("input")
    expect(bea.page.get_by_test_id("typing")).to_have_text("")
    bea.input.press_sequentially("hmm")
    expect(ada.page.get_by_test_id("typing")).to_have_text("Bea is typing…")

    # Chat, both ways.
    ada.send("Hello from the WebSocket side")
    bea.expect_once("Hello from the WebSocket side")
    bea.send("And hello from SSE")
    ada.expect_once("And hello from SSE")
    expect(ada.page.get_by_test_id("typing")).to_have_text("")
    ada.expect_once("Hello from the WebSocket side")
    expect(ada.message("Hello from the WebSocket side")).to_have_attribute("data-state", "sent")
    expect(bea.message("And hello from SSE")).to_have_attribute("data-state", "sent")
    assert ada.texts() == bea.texts() == ["Hello from the WebSocket side", "And hello from SSE"]

    # Leaving shows up as presence too.
    bea.page.close()
    expect(ada.person("Bea")).to_have_count(0)
