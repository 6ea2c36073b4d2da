"""The bundled pages satisfy the CSP without ``'unsafe-inline'`` (issue 9), in a real Chromium.

Every page is watched two ways: console messages mentioning the Content Security Policy,
and ``securitypolicyviolation`` events recorded by a script installed before the page's own.
A control page proves the watch works: an inline script injected into the chat page is
blocked by the CSP and reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.server import CHROMIUM, CHROMIUM_ARGS, Server

pytestmark = pytest.mark.browser

playwright_sync = pytest.importorskip("playwright.sync_api")

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


#: this module's own server, with the defaults (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


class Watched:
    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def csp_problems(self) -> list[str]:
        seen = [c for c in self.console if "Content Security Policy" in c]
        return seen + list(self.page.evaluate("window.__cspViolations || []"))

    def close(self) -> None:
        self.context.close()


def test_chat_page_runs_under_the_csp_without_violations(srv: Server, browser: Any) -> None:
    from playwright.sync_api import expect

    tab = Watched(browser)
    try:
        response = tab.page.goto(srv.http + "/")
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp
        page = tab.page
        page.get_by_test_id("join-name").fill("Csp Checker")
        page.get_by_test_id("join-submit").click()
        expect(page.get_by_test_id("conn-pill")).to_have_attribute(
            "data-state", "open", timeout=15_000
        )
        page.get_by_test_id("message-input").fill("styled and scripted under a strict CSP")
        page.get_by_test_id("message-input").press("Enter")
        expect(page.get_by_test_id("messages")).to_contain_text(
            "styled and scripted", timeout=10_000
        )
        # the stylesheet really applied (a blocked stylesheet would leave the default font)
        assert page.evaluate("document.styleSheets.length") >= 1
        assert tab.csp_problems() == [], tab.csp_problems()
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_admin_page_runs_under_the_csp_without_violations(srv: Server, browser: Any) -> None:
    from playwright.sync_api import expect

    tab = Watched(browser)
    try:
        response = tab.page.goto(srv.http + "/admin")
        assert response is not None and response.status == 200
        tab.page.locator("#token").fill("wrong")
        tab.page.locator("#login button").click()
        expect(tab.page.locator("#problem")).to_be_visible()
        assert tab.csp_problems() == [], tab.csp_problems()
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_control_an_inline_script_is_blocked_and_reported(srv: Server, browser: Any) -> None:
    tab = Watched(browser)
    try:
        tab.page.goto(srv.http + "/")
        tab.page.evaluate(
            """() => { const s = document.createElement("script");
                      s.textContent = "window.__inlineRan = true;";
                      document.head.append(s); }"""
        )
        tab.page.wait_for_function("window.__cspViolations.length > 0", timeout=5_000)
        assert tab.page.evaluate("window.__inlineRan === true") is False
        assert any("script-src" in v for v in tab.csp_problems()), tab.csp_problems()
    finally:
        tab.close()
