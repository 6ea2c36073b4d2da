"""What a person sees: text stays text, links are safe, commands, bots, streaming replies,
unread count, the phone layout, keyboard use, and a screenshot of a real conversation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, create_session

pytestmark = [pytest.mark.browser]

PAYLOAD = "<img src=x onerror=alert(1)>"

VISIBILITY = """(state) => {
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_html_in_a_message_is_shown_as_text_and_runs_nothing(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada")
    bea = open_chat(server, "Bea")
    for chat in (ada, bea):
        chat.page.evaluate("window.__ran = false")
    ada.send(PAYLOAD)
    ada.send('<script>window.__ran = true</script><b onclick="alert(2)">bold?</b>')
    for chat in (bea, ada):
        chat.expect_once(PAYLOAD)
        expect(chat.message(PAYLOAD).get_by_test_id("message-text")).to_have_text(PAYLOAD)
        expect(chat.messages.locator("img, script, b, [onerror], [onclick]")).to_have_count(0)
        assert chat.page.evaluate("window.__ran") is False
    # Dialogs, page errors and CSP violations are failures (see conftest.watch).


def test_links_are_clickable_only_for_http_and_https(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada")
    bea = open_chat(server, "Bea")
    text = "docs at https://example.com/a?b=1&c=<2>. not javascript:alert(1) nor data:text/html,x"
    ada.send(text)
    msg = bea.message(text)
    expect(msg).to_have_count(1)
    links = msg.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.com/a?b=1&c=")
    expect(links).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(links).to_have_attribute("target", "_blank")
    expect(msg.get_by_test_id("message-text")).to_have_text(text)


def test_slash_commands_autocomplete_help_and_clear(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada")
    bea = open_chat(server, "Bea")
    ada.send("soon to be gone")
    bea.expect_once("soon to be gone")

    ada.input.press_sequentially("/")
    options = ada.page.get_by_test_id("command-option")
    expect(options).to_have_count(3)
    ada.input.press_sequentially("he")
    expect(options).to_have_count(1)
    ada.input.press("Tab")
    expect(ada.input).to_have_value("/help")
    ada.input.press("Enter")
    expect(ada.page.get_by_test_id("note").last).to_contain_text("/clear")
    expect(ada.input).to_have_value("")
    bea.expect_once("soon to be gone")  # /help is local: nothing was sent

    ada.input.press_sequentially("/cl")
    ada.input.press("ArrowDown")  # wraps around the single match
    ada.input.press("Enter")  # completes first…
    expect(ada.input).to_have_value("/clear")
    ada.input.press("Enter")  # …then runs
    for chat in (ada, bea):
        expect(chat.message("soon to be gone")).to_have_count(0)
        expect(chat.page.get_by_test_id("note").last).to_contain_text("Ada cleared the chat")
    ada.send("fresh start")
    bea.expect_once("fresh start")


def test_bots_panel_toggles_and_streamed_reply_grows_in_place(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada")
    bea = open_chat(server, "Bea")
    toggles = ada.page.get_by_test_id("bot-toggle")
    expect(toggles).not_to_have_count(0)
    first = toggles.first
    bot = first.get_attribute("data-bot")
    assert bot
    before = first.get_attribute("aria-checked")
    after = "false" if before == "true" else "true"
    first.click()
    expect(first).to_have_attribute("aria-checked", after)
    theirs = bea.page.locator(f'[data-testid="bot-toggle"][data-bot="{bot}"]')
    expect(theirs).to_have_attribute("aria-checked", after)
    if after == "false":
        theirs.click()  # Bea turns it back on, Ada sees that too
        expect(first).to_have_attribute("aria-checked", "true")

    # A real mention: ai-stream deltas grow one element, then the durable chat with the
    # same id replaces it. Record the streaming element's length as it changes.
    bea.page.evaluate(
        """() => {
          window.__lens = [];
          const list = document.querySelector('[data-testid="messages"]');
          new MutationObserver(() => {
            for (const li of list.querySelectorAll('li[data-kind="bot"].streaming')) {
              window.__lens.push([li.dataset.id, li.querySelector('.text').textContent.length]);
            }
          }).observe(list, { subtree: true, childList: true, characterData: true });
        }"""
    )
    ada.send(f"@{bot} what is server-sent events, in one line?")
    reply = bea.page.locator('li[data-kind="bot"][data-seq]')
    expect(reply).to_have_count(1, timeout=30_000)
    reply_id = reply.get_attribute("data-id")
    expect(bea.page.locator(f'li[data-id="{reply_id}"]')).to_have_count(1)
    expect(reply).not_to_have_class("streaming")
    lens = [n for rid, n in bea.page.evaluate("window.__lens") if rid == reply_id]
    assert len(set(lens)) >= 2, f"the reply did not grow in place: {lens}"
    assert lens == sorted(lens)
    final = reply.get_by_test_id("message-text").inner_text()
    assert len(final) >= max(lens)
    expect(ada.page.locator(f'li[data-id="{reply_id}"]')).to_have_count(1)


def test_unread_count_in_title_and_keyboard_only_use(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada")
    bea = open_chat(server, "Bea")
    expect(bea.page).to_have_title("Lastra Chat")
    # Pretend Bea's tab is in the background.
    bea.page.evaluate(VISIBILITY, "hidden")
    ada.send("ping one")
    ada.send("ping two")
    expect(bea.page).to_have_title("(2) Lastra Chat")
    bea.page.evaluate(VISIBILITY, "visible")
    expect(bea.page).to_have_title("Lastra Chat")

    # Keyboard only: the sound toggle, then the message box, without the mouse.
    page = ada.page
    page.get_by_test_id("sound-toggle").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("sound-toggle")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Space")
    expect(page.get_by_test_id("sound-toggle")).to_have_attribute("aria-pressed", "false")
    ada.input.focus()
    page.keyboard.type("typed with keys")
    page.keyboard.press("Enter")
    bea.expect_once("typed with keys")


def test_name_is_remembered_across_reloads(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada Lovelace")
    user_id = ada.page.evaluate("window.lastra.userId")
    ada.page.reload()
    ada.wait_connected()
    expect(ada.page.get_by_test_id("me-name")).to_have_text("Ada Lovelace")
    assert ada.page.evaluate("window.lastra.userId") == user_id
    ada.page.get_by_test_id("leave-button").click()
    expect(ada.page.get_by_test_id("join-name")).to_have_value("Ada Lovelace")
    ada.page.get_by_test_id("join-name").fill("   ")
    ada.page.get_by_test_id("join-submit").click()
    expect(ada.page.get_by_test_id("join-error")).not_to_be_empty()


def test_phone_width_layout(server: Any, open_chat: Any) -> None:
    ada = open_chat(server, "Ada", viewport={"width": 390, "height": 800})
    open_chat(server, "Bea")
    page = ada.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    expect(page.get_by_test_id("people")).not_to_be_visible()
    toggle = page.get_by_test_id("sidebar-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(ada.person("Bea")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("people")).not_to_be_visible()
    ada.send("sent from a phone")
    expect(ada.message("sent from a phone")).to_be_in_viewport()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-phone.png"))


def test_screenshot_of_a_real_conversation(make_server: Any, open_chat: Any) -> None:
    srv = make_server(TRANSPORT="rollout", WS_ROLLOUT_PERCENT="100")
    bea_session = create_session(srv, "Bea Okafor")
    srv.stop()
    srv.env["LASTRA_SSE_USERS"] = bea_session["userId"]
    srv.start()

    ada = open_chat(srv, "Ada Quist")
    bea = open_chat(srv, session=bea_session)
    bea.wait_connected("sse")
    lines = [
        (ada, "Morning! Did the rollout flag land on staging?"),
        (bea, "Yes — I'm still on SSE, you're on WebSocket. Same room either way."),
        (ada, "Nice. Release notes are at https://example.com/lastra/notes"),
        (ada, "I'll flip another 10% after lunch."),
        (bea, "Sounds good. I'll keep an eye on the dashboards."),
    ]
    for chat, text in lines:
        chat.send(text)
        ada.expect_once(text)  # one at a time, so the order on screen is the script's
    bea.expect_once(lines[-1][1])
    assert ada.texts() == [text for _, text in lines]
    bea.input.press_sequentially("One more thing")
    expect(ada.page.get_by_test_id("typing")).to_have_text("Bea Okafor is typing…")
    # A bot may have chimed in; let it finish so the picture is not mid-sentence.
    expect(ada.page.locator("li.streaming")).to_have_count(0, timeout=30_000)
    ada.page.mouse.move(0, 0)  # no hover highlight in the picture
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "chat.png"
    ada.page.screenshot(path=str(path))
    assert Path(path).stat().st_size > 10_000
