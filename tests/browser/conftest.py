"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser).

``open_chat(server, name=..., session=...)`` opens the bundled page in a fresh browser
context (its own localStorage, so its own user) and returns a :class:`ChatPage`. Every
page is watched: an uncaught page error, a CSP violation or a JavaScript dialog fails the
test at teardown. ``open_call`` does the same in a Chromium launched with fake camera,
microphone and screen capture (see ``CALL_ARGS``), for the WebRTC call tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402
from support.server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (tests/conftest.py)

# Calls: fake camera + microphone (a test pattern and a beep), no permission prompts, and
# getDisplayMedia that picks the whole screen by itself. Headless Chromium does capture
# with these (a 1280x720 "screen:" track), so no canvas stand-in is needed.
CALL_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--enable-usermedia-screen-capturing",
    "--auto-accept-this-tab-capture",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_sync.sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright_instance: Any) -> Iterator[Browser]:
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield b
    b.close()


@pytest.fixture(scope="session")
def call_browser(playwright_instance: Any) -> Iterator[Browser]:
    """Chromium with fake media devices and automatic screen capture (``CALL_ARGS``)."""
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS + CALL_ARGS, headless=True
    )
    yield b
    b.close()


def create_session(server: Any, name: str) -> dict[str, Any]:
    """POST /api/session from the test, as a third-party client would."""
    resp = httpx.post(f"{server.http}/api/session", json={"userName": name}, timeout=10)
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


def rollout_server(
    make_server: Any, sse: tuple[str, ...] = (), **settings: str
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A rollout server with everyone on WebSocket except the users named in ``sse``.

    Their sessions are made first (to learn their userIds), then the server restarts with
    them in ``LASTRA_SSE_USERS``. Returns the server and ``{name: session}``.
    """
    srv = make_server(TRANSPORT="rollout", WS_ROLLOUT_PERCENT="100", **settings)
    sessions = {name: create_session(srv, name) for name in sse}
    if sessions:
        srv.stop()
        srv.env["LASTRA_SSE_USERS"] = ",".join(s["userId"] for s in sessions.values())
        srv.start()
    return srv, sessions


def post_chat(server: Any, token: str, text: str, client_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": text}
    if client_id:
        body["clientId"] = client_id
    resp = httpx.post(
        f"{server.http}/api/chat-message",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


@dataclass
class ChatPage:
    """One browser tab on the chat page, with the selectors the tests share."""

    page: Page
    context: BrowserContext
    problems: list[str] = field(default_factory=list)

    # -- locators
    @property
    def messages(self) -> Any:
        return self.page.get_by_test_id("messages")

    @property
    def input(self) -> Any:
        return self.page.get_by_test_id("message-input")

    @property
    def banner(self) -> Any:
        return self.page.get_by_test_id("banner")

    @property
    def pill(self) -> Any:
        return self.page.get_by_test_id("conn-pill")

    def texts(self) -> list[str]:
        """Texts of the people's messages (not bots', not system lines) in display order."""
        loc = self.page.locator(
            '[data-testid="messages"] > li[data-kind="user"] [data-testid="message-text"]'
        )
        return loc.all_inner_texts()

    def message(self, text: str) -> Any:
        return self.page.locator('li[data-testid="message"]').filter(
            has=self.page.get_by_test_id("message-text").get_by_text(text, exact=True)
        )

    def person(self, name: str) -> Any:
        return self.page.locator('li[data-testid="person"]').filter(
            has=self.page.get_by_test_id("person-name").get_by_text(name, exact=True)
        )

    # -- actions
    def join(self, name: str) -> None:
        self.page.get_by_test_id("join-name").fill(name)
        self.page.get_by_test_id("join-submit").click()

    def wait_connected(self, transport: str | None = None, timeout: float = 15_000) -> None:
        expect(self.pill).to_have_attribute("data-state", "open", timeout=timeout)
        if transport:
            expect(self.pill).to_have_attribute("data-transport", transport)

    def send(self, text: str) -> None:
        self.input.fill(text)
        self.input.press("Enter")
        expect(self.input).to_have_value("")

    def expect_once(self, text: str) -> None:
        expect(self.message(text)).to_have_count(1)


@pytest.fixture
def open_chat(browser: Browser) -> Iterator[Callable[..., ChatPage]]:
    yield from page_factory(browser)


@pytest.fixture
def open_call(call_browser: Browser) -> Iterator[Callable[..., ChatPage]]:
    """Like ``open_chat``, in the Chromium with fake camera, microphone and screen."""
    yield from page_factory(call_browser)


def page_factory(browser: Browser) -> Iterator[Callable[..., ChatPage]]:
    contexts: list[BrowserContext] = []
    pages: list[ChatPage] = []

    def factory(
        server: Any,
        name: str | None = None,
        *,
        session: dict[str, Any] | None = None,
        context: BrowserContext | None = None,
        viewport: dict[str, int] | None = None,
        init_script: str | None = None,
        before_goto: Callable[[Page], None] | None = None,
        wait: bool = True,
    ) -> ChatPage:
        ctx = context
        if ctx is None:
            ctx = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
            contexts.append(ctx)
            if session is not None:
                stored = {k: session[k] for k in ("token", "userId", "userName")}
                ctx.add_init_script(
                    "if (!localStorage.getItem('lastra.session')) "
                    f"localStorage.setItem('lastra.session', {json.dumps(json.dumps(stored))});"
                )
        page = ctx.new_page()
        chat = ChatPage(page=page, context=ctx)
        watch(chat)
        if init_script:
            page.add_init_script(init_script)
        if before_goto:
            before_goto(page)
        page.goto(server.http + "/")
        if name is not None:
            chat.join(name)
        if wait and (name is not None or session is not None):
            chat.wait_connected()
        pages.append(chat)
        return chat

    yield factory
    problems = [p for chat in pages for p in chat.problems]
    for ctx in contexts:
        ctx.close()
    assert not problems, "browser problems:\n" + "\n".join(problems)


# Console noise a healthy page may print while the tests break its network on purpose.
EXPECTED_CONSOLE = re.compile(
    r"WebSocket connection to .* failed|net::ERR_INTERNET_DISCONNECTED|net::ERR_CONNECTION_REFUSED"
    r"|Failed to load resource|net::ERR_NETWORK_CHANGED|net::ERR_FAILED"
)


def watch(chat: ChatPage) -> None:
    page = chat.page

    def on_dialog(dialog: Any) -> None:
        chat.problems.append(f"dialog opened: {dialog.type} {dialog.message!r}")
        dialog.dismiss()

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not EXPECTED_CONSOLE.search(msg.text):
            chat.problems.append(f"console error: {msg.text}")
        if "Content Security Policy" in msg.text:
            chat.problems.append(f"CSP: {msg.text}")

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda err: chat.problems.append(f"page error: {err}"))
    page.on("console", on_console)
