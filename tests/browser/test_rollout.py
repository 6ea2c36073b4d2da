"""The rollout as real Chromium pages live it: call outcomes on ``/metrics``, and the guard
moving a failing WebSocket page to SSE without losing its history, then cleared from the
admin page's button, on one process and on two over Redis.

The WebSocket cohort is made to fail with the fault hook ``LASTRA_TEST_FAULTS`` mounts
(``POST /api/test/fault`` closes every WebSocket of that process with 1011).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from support.cluster import cluster

from .conftest import ChatPage, rollout_server
from .test_calls import join_call, two_party_call

pytestmark = [pytest.mark.browser]

ADMIN = "admin-token-for-tests"
GUARD = {
    "ROLLOUT_GUARD": "true",
    "ROLLOUT_GUARD_MIN_SAMPLES": "1",
    "TEST_FAULTS": "true",
    "ADMIN_TOKEN": ADMIN,
}


def metric(server: Any, name: str, **labels: str) -> float:
    """One sample of ``/metrics`` (0 when absent); ``server`` has ``.http``."""
    text = httpx.get(f"{server.http}/metrics", timeout=5).text
    for line in text.splitlines():
        key, _, number = line.rpartition(" ")
        metric_name, _, rest = key.partition("{")
        if metric_name == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == labels:
            return float(number)
    return 0.0


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        time.sleep(0.2)


@dataclass
class Base:
    http: str


def token_of(chat: ChatPage) -> str:
    token: str = chat.page.evaluate("JSON.parse(localStorage.getItem('lastra.session')).token")
    return token


def transport_for(server: Any, token: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{server.http}/api/transport", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    body: dict[str, Any] = resp.json()
    return body


def fault(server: Any) -> int:
    resp = httpx.post(
        f"{server.http}/api/test/fault", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5
    )
    assert resp.status_code == 200, resp.text
    closed: int = resp.json()["closed"]
    return closed


# ------------------------------------------------------------------ calls


def test_a_websocket_to_sse_call_shows_as_connected_ws_sse_on_metrics(
    make_server: Any, open_call: Any
) -> None:
    ada, bea = two_party_call(make_server, open_call)
    server = Base(ada.page.url.rstrip("/"))
    # each side reports its own connection once, on its own transport
    eventually(
        lambda: (
            metric(server, "lastra_call_outcomes_total", pair="ws-sse", outcome="connected") == 2
        ),
        "both ends' connected outcomes",
    )
    assert metric(server, "lastra_call_outcomes_total", pair="ws-sse", outcome="failed") == 0
    assert metric(server, "lastra_call_connect_seconds_count", pair="ws-sse") == 2
    assert metric(server, "lastra_client_reports_total", type="call-outcome", transport="sse") == 1
    (sent,) = bea.page.evaluate("lastraCall.outcomes")
    assert sent["outcome"] == "connected" and sent["route"] == "direct"
    assert sent["remoteTransport"] == "ws" and sent["connectMs"] > 0


def test_a_call_whose_signals_are_dropped_shows_as_failed(make_server: Any, open_call: Any) -> None:
    srv, sessions = rollout_server(make_server, sse=("Bea",))
    fail_fast = "localStorage.setItem('lastra.callFailMs', '4000');"
    ada = open_call(srv, "Ada", init_script=fail_fast)
    ada.wait_connected("ws")

    # Bea's signals never reach the server: her page's fetch drops them (in the page, so
    # nothing waits on this test's thread the way a Playwright route would)
    drop = (
        "const send = window.fetch.bind(window); window.fetch = (url, init) =>"
        " String(url).includes('/api/chat-signal')"
        " ? Promise.reject(new TypeError('dropped by the test')) : send(url, init);"
    )
    bea = open_call(srv, session=sessions["Bea"], init_script=fail_fast + drop)
    bea.wait_connected("sse")
    join_call(ada)
    join_call(bea)
    eventually(
        lambda: metric(srv, "lastra_call_outcomes_total", pair="ws-sse", outcome="failed") == 2,
        "both ends report the call failed",
    )
    assert metric(srv, "lastra_call_outcomes_total", pair="ws-sse", outcome="connected") == 0
    assert [o["outcome"] for o in ada.page.evaluate("lastraCall.outcomes")] == ["failed"]


def test_pages_report_delivery_and_resumes_per_transport(make_server: Any, open_chat: Any) -> None:
    """Every second here (30 s by default): acks, receipts and a resume reach /metrics."""
    srv, sessions = rollout_server(make_server, sse=("Bea",))
    fast = "localStorage.setItem('lastra.reportInterval', '1000');"
    ada = open_chat(srv, "Ada", init_script=fast)
    bea = open_chat(srv, session=sessions["Bea"], init_script=fast)
    ada.wait_connected("ws")
    bea.wait_connected("sse")
    for chat, text in ((ada, "from Ada"), (bea, "from Bea")):
        chat.send(text)
        for other in (ada, bea):
            other.expect_once(text)
    for transport in ("ws", "sse"):
        eventually(
            lambda t=transport: (
                metric(srv, "lastra_client_send_ack_seconds_count", transport=t) >= 1
                and metric(srv, "lastra_client_commit_receive_seconds_count", transport=t) >= 2
            ),
            f"{transport} delivery samples",
        )
    # Ada drops off and resumes: one recovered resume, nothing lost
    ada.context.set_offline(True)
    expect(ada.pill).not_to_have_attribute("data-state", "open")
    bea.send("while Ada was away")
    ada.context.set_offline(False)
    ada.wait_connected("ws")
    ada.expect_once("while Ada was away")
    eventually(
        lambda: (
            metric(srv, "lastra_client_resumes_total", transport="ws", outcome="recovered") == 1
        ),
        "Ada's resume reported",
    )
    assert metric(srv, "lastra_client_resumes_total", transport="ws", outcome="lost") == 0
    assert metric(srv, "lastra_client_replayed_events_total", transport="ws") >= 1
    assert metric(srv, "lastra_client_seq_gaps_total", transport="ws") == 0


# ------------------------------------------------------------------ the guard


def fail_until_on_sse(server: Any, chat: ChatPage) -> None:
    """Close the page's WebSocket abnormally until, reconnecting, it lands on SSE."""
    for _ in range(10):
        if chat.pill.get_attribute("data-transport") == "sse":
            return
        old = chat.page.evaluate("lastra.peerId")
        fault(server)
        chat.page.wait_for_function(
            "(old) => lastra.isConnected && lastra.peerId && lastra.peerId !== old", arg=old
        )
        chat.wait_connected()
    chat.wait_connected("sse")


def guard_state(server: Any) -> float:
    return metric(server, "lastra_rollout_guard_tripped")


def clear_from_admin_page(open_chat: Any, server: Any) -> None:
    admin = open_chat(server, wait=False)
    admin.page.goto(server.http + "/admin")
    admin.page.locator("#token").fill(ADMIN)
    admin.page.get_by_role("button", name="Show").click()
    guard = admin.page.get_by_test_id("guard")
    expect(guard).to_have_attribute("data-tripped", "true")
    expect(admin.page.locator("#guard-reasons li").first).to_contain_text("abnormal closes")
    scorecard = admin.page.get_by_test_id("scorecard").locator("tbody tr")
    expect(scorecard).to_have_count(5)
    admin.page.get_by_test_id("guard-clear").click()
    expect(guard).to_have_attribute("data-tripped", "false")


def test_the_guard_moves_a_failing_websocket_page_to_sse_keeping_history(
    make_server: Any, open_chat: Any
) -> None:
    srv = make_server(**GUARD)
    ada = open_chat(srv, "Ada")
    ada.wait_connected("ws")
    token = token_of(ada)
    assert transport_for(srv, token)["transport"] == "ws"
    ada.send("before the fault")
    ada.expect_once("before the fault")

    fail_until_on_sse(srv, ada)
    assert guard_state(srv) == 1
    assert transport_for(srv, token) == {"transport": "sse", "reason": "guard"}
    ada.expect_once("before the fault")  # history kept, shown once
    ada.send("after the move")
    ada.expect_once("after the move")
    assert "rollout guard tripped" in srv.log()

    clear_from_admin_page(open_chat, srv)
    eventually(lambda: guard_state(srv) == 0, "guard cleared")
    assert transport_for(srv, token)["transport"] == "ws"


def test_the_guard_holds_for_every_process_over_redis(
    tmp_path: Path, redis_url: str, open_chat: Any
) -> None:
    with cluster(tmp_path, redis_url, 2, **GUARD) as (a, b):
        ada = open_chat(a, "Ada")  # fails on process A
        bea = open_chat(b, "Bea")  # connected to process B
        ada.wait_connected("ws")
        bea.wait_connected("ws")
        bea.send("Bea was here")
        fail_until_on_sse(a, ada)
        # the trip on A holds on B: Bea's next connection is SSE, though B saw no failure
        eventually(lambda: guard_state(b) == 1, "B adopts A's trip")
        assert transport_for(b, token_of(bea)) == {"transport": "sse", "reason": "guard"}
        bea.context.set_offline(True)  # her reconnect (not a WebSocket failure on B)
        expect(bea.pill).not_to_have_attribute("data-state", "open")
        bea.context.set_offline(False)
        bea.wait_connected("sse")
        bea.expect_once("Bea was here")
        ada.expect_once("Bea was here")

        clear_from_admin_page(open_chat, b)  # cleared on B, for A as well
        eventually(lambda: guard_state(a) == 0, "A adopts the clear")
        assert transport_for(a, token_of(ada))["transport"] == "ws"
