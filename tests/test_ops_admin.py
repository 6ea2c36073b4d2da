"""The operator page ``/admin`` and ``/api/admin/stats`` (issue 9), during a mixed-transport run.

A rollout server (``TRANSPORT=rollout``, ``WS_ROLLOUT_PERCENT=50``, ``ADMIN_TOKEN`` set). In
a background thread, a user assigned to WebSocket and a user assigned to SSE chat with each
other (and each makes one mistake, so the error columns have something to show). Meanwhile
Chromium opens ``/admin``, is refused with a wrong token, types the right one into the form,
waits for the numbers of that run, and saves ``test-artifacts/admin.png``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import clients as clients_module
from support.clients import Session, SseClient, WsClient, asession
from support.server import CHROMIUM, CHROMIUM_ARGS, ROOT, Server

ADMIN_TOKEN = "admin-token-for-tests-6f1c2b9e0d7a4c3b"
ARTIFACT = ROOT / "test-artifacts" / "admin.png"


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "TRANSPORT": "rollout",
    "WS_ROLLOUT_PERCENT": "50",
    "ADMIN_TOKEN": ADMIN_TOKEN,
    "AI_OFFLINE_DELAY": "0.002",
}


def stats(srv: Server, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with httpx.Client(timeout=5, trust_env=False) as http:
        return http.get(f"{srv.http}/api/admin/stats", headers=headers)


def test_admin_stats_refuse_a_missing_or_wrong_token(srv: Server) -> None:
    same_length = "x" * len(ADMIN_TOKEN)
    for token in (None, "wrong", same_length, ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x"):
        resp = stats(srv, token)
        assert resp.status_code == 401, (token, resp.text)
        assert resp.json()["code"] == "not_authenticated"
        assert "flag" not in resp.text
    with httpx.Client(timeout=5, trust_env=False) as http:  # not from the query string
        resp = http.get(f"{srv.http}/api/admin/stats", params={"token": ADMIN_TOKEN})
        assert resp.status_code == 401
        # the page itself is public: it only holds the form
        page = http.get(f"{srv.http}/admin")
        assert page.status_code == 200 and "Admin token" in page.text
        assert ADMIN_TOKEN not in page.text
    assert stats(srv, ADMIN_TOKEN).status_code == 200


# ------------------------------------------------------------------ the mixed run


async def user_on(srv: Server, transport: str) -> Session:
    """A new user whom the 50 % rollout assigns to ``transport`` (about two tries)."""
    for _ in range(50):
        user = await asession(srv.http)
        if user.transport == transport:
            return user
    raise AssertionError(f"50 users and none assigned to {transport}")


class MixedRun(threading.Thread):
    """A WebSocket user and an SSE user chatting until stopped (own event loop)."""

    def __init__(self, srv: Server) -> None:
        super().__init__(daemon=True)
        self.srv = srv
        self.started_chatting = threading.Event()
        self.halt = threading.Event()
        self.rounds = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.main())
        except BaseException as exc:  # surfaced by the test
            self.failure = exc
            self.started_chatting.set()

    async def main(self) -> None:
        ws = await WsClient.open(self.srv, await user_on(self.srv, "ws"))
        sse = await SseClient.open(self.srv, await user_on(self.srv, "sse"))
        try:
            while not self.halt.is_set():
                n = self.rounds
                assert (await ws.chat(f"WebSocket says hello #{n}")).ok
                await sse.expect("chat", lambda d, n=n: d["text"] == f"WebSocket says hello #{n}")
                assert (await sse.chat(f"SSE answers #{n}")).ok
                await ws.expect("chat", lambda d, n=n: d["text"] == f"SSE answers #{n}")
                if n == 2:  # one mistake each
                    assert (await ws.request("no-such-type", {})).code == "unknown_type"
                    assert (await sse.request("typing", {"isTyping": "yes"})).code == "invalid"
                self.rounds += 1
                if self.rounds >= 4:
                    self.started_chatting.set()
                await asyncio.sleep(0.15)  # the pace of a conversation, not a wait for an event
        finally:
            for client in (ws, sse):
                await client.close()
                with contextlib.suppress(ValueError):
                    clients_module._open_clients.remove(client)


@pytest.mark.browser
def test_admin_page_during_a_mixed_transport_run(srv: Server) -> None:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    expect = playwright_sync.expect

    run = MixedRun(srv)
    run.start()
    try:
        assert run.started_chatting.wait(20), "the two users never started chatting"
        assert run.failure is None, run.failure

        # the numbers behind the page
        body: dict[str, Any] = stats(srv, ADMIN_TOKEN).json()
        assert body["flag"]["transport"] == "rollout" and body["flag"]["wsRolloutPercent"] == 50
        assert body["connections"] == {"ws": 1, "sse": 1}, body
        assert body["users"] == {"ws": 1, "sse": 1}, body
        window = body["window"]["byTransport"]
        assert window["ws"]["in"] >= 4 and window["sse"]["in"] >= 4, window
        assert window["ws"]["err"] >= 1 and window["sse"]["err"] >= 1, window
        assert body["lastSeq"] >= 8

        with playwright_sync.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                problems: list[str] = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on(
                    "console",
                    lambda m: (
                        problems.append(m.text) if "Content Security Policy" in m.text else None
                    ),
                )
                page.goto(srv.http + "/admin")
                token = page.locator("#token")
                token.fill("not-the-admin-token")
                page.locator("#login button[type=submit]").click()
                expect(page.locator("#problem")).to_contain_text("Refused")
                expect(page.locator("#panel")).to_be_hidden()

                token.fill(ADMIN_TOKEN)
                page.locator("#login button[type=submit]").click()
                expect(page.locator("#panel")).to_be_visible(timeout=10_000)
                rows = page.locator("#connections tbody tr")
                expect(rows.nth(0)).to_have_text("ws11", timeout=10_000)
                expect(rows.nth(1)).to_have_text("sse11")
                expect(page.locator("#flag")).to_contain_text("rollout")
                expect(page.locator("#flag")).to_contain_text("50")
                win = page.locator("#window tbody tr")
                for i, transport in enumerate(("ws", "sse")):
                    cells = win.nth(i).locator("td")
                    expect(cells.nth(0)).to_have_text(transport)
                    assert int(cells.nth(1).inner_text()) >= 4
                    assert int(cells.nth(2).inner_text()) >= 1
                expect(page.locator("#verdict")).to_contain_text("error rate")
                ARTIFACT.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACT), full_page=True)
                assert problems == [], problems
            finally:
                browser.close()
    finally:
        run.halt.set()
        run.join(10)
    assert run.failure is None, run.failure
    assert ARTIFACT.exists() and ARTIFACT.stat().st_size > 10_000
