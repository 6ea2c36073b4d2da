"""A large room in the bundled page (protocol §8): it lists what it holds and pages on demand.

With ``PRESENCE_SNAPSHOT_MAX=5`` a newcomer to a room of 12 gets the first five users (join
order) and itself. The page must show the server's online count at once, list only that, and
fetch the next page only when the list is scrolled to its end (or its "N more…" row is
clicked, where IntersectionObserver is missing): paging everything would make the server send
the tab every change in the room again. A change beyond what the tab holds is not sent to it
(the counts are), and shows once that part of the list is fetched; from then on, as in a
small room, every change arrives.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import ChatPage, create_session

pytestmark = [pytest.mark.browser]

MAX = 5
MEMBERS = 11  # + the viewer: 12 users, a snapshot of 5 (+ itself), pages of 5

OPEN_MEMBER = """async (token) => {
  const { LastraClient } = await import('/lastra-client.js');
  window.member = new LastraClient({ token });
  await new Promise((r) => window.member.on('ready', r));
}"""

# Acknowledged before it returns, so the change is in the server's presence by then.
CAMERA = """async (on) => {
  const ref = `cam-${Math.random()}`;
  const acked = new Promise((r) => window.member.on('ack', (d) => { if (d.ref === ref) r(); }));
  window.member.send('media-state', { camera: on }, { ref });
  await acked;
}"""

NO_OBSERVER = "delete window.IntersectionObserver;"  # the "N more…" button is all there is

# Short enough that the end of the first page (5 or 6 rows) lies further below the sidebar's
# fold than the observer looks ahead (64 px): nothing is fetched before the user scrolls.
SHORT = {"width": 1280, "height": 260}


def open_members(server: Any, browser: Any, names: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """One browser context per member (SSE's 6-per-origin cap); returns them and userId → page."""
    contexts, pages = [], {}
    for name in names:
        session = create_session(server, name)
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(server.http + "/healthz")
        page.evaluate(OPEN_MEMBER, session["token"])
        contexts.append(ctx)
        pages[session["userId"]] = page
    return contexts, pages


def person(chat: ChatPage, user_id: str) -> Any:
    return chat.page.locator(f'li[data-testid="person"][data-user-id="{user_id}"]')


@pytest.mark.parametrize(("transport", "fetch"), [("ws", "scroll"), ("sse", "click")])
def test_the_sidebar_lists_what_it_holds_and_pages_when_scrolled(
    make_server: Any, browser: Any, open_chat: Any, transport: str, fetch: str
) -> None:
    server = make_server(
        TRANSPORT=transport,
        PRESENCE_SNAPSHOT_MAX=str(MAX),
        PRESENCE_BATCH="0.05",
        PRESENCE_BATCH_LARGE="0.1",
        PRESENCE_GRACE="60",  # a member who leaves stays listed, away, while the test runs
    )
    contexts, members = open_members(server, browser, [f"Member {i}" for i in range(MEMBERS)])
    viewer = open_chat(
        server, "Viewer", viewport=SHORT, init_script=NO_OBSERVER if fetch == "click" else None
    )
    viewer.wait_connected(transport)
    page = viewer.page
    count = page.get_by_test_id("people-count")
    people = page.locator('li[data-testid="person"]')
    more = page.get_by_test_id("people-more")

    me = page.evaluate("() => window.lastra.userId")
    order = [*members, me]  # join order: each member was ready before the next came
    held = order[:MAX]  # the snapshot's page; the viewer, a newcomer, comes after it
    first = [*held, me]
    beyond = order[MAX:-1]
    inside = next(u for u in held if u != me)
    outside, leaver = beyond[-1], beyond[-2]

    expect(count).to_have_text(str(MEMBERS + 1))  # the server's `online`, not the list's
    expect(people).to_have_count(len(first))
    expect(more).to_have_text(f"{MEMBERS + 1 - len(first)} more…")

    # Beyond the held part: a camera and a departure. Inside it: a camera, sent last, whose
    # diff cannot arrive before the others' would have.
    members[outside].evaluate(CAMERA, True)
    members[leaver].evaluate("() => window.member.destroy()")
    expect(count).to_have_text(str(MEMBERS))  # counts stay right
    members[inside].evaluate(CAMERA, True)
    expect(person(viewer, inside).get_by_test_id("media-camera")).to_have_attribute(
        "data-on", "true"
    )
    expect(people).to_have_count(len(first))  # nothing paged by itself, nothing beyond sent
    for user_id in beyond:
        expect(person(viewer, user_id)).to_have_count(0)
    assert page.evaluate("() => window.lastra.presenceComplete") is False

    steps = 0
    while more.count():
        listed = people.count()
        if fetch == "click":
            more.get_by_role("button").click()
        else:
            more.scroll_into_view_if_needed()
        expect(people).not_to_have_count(listed)  # a page came (or two, if the end stayed in view)
        steps += 1
    assert steps >= 1
    expect(people).to_have_count(MEMBERS + 1)
    assert page.evaluate("() => window.lastra.presenceComplete") is True

    # The fetched part as it is now: the camera on, the leaver away; the list counts itself.
    expect(person(viewer, outside).get_by_test_id("media-camera")).to_have_attribute(
        "data-on", "true"
    )
    expect(person(viewer, leaver)).to_have_class("person away")
    expect(count).to_have_text(str(MEMBERS))

    # The whole list now: every change arrives, beyond the first page too.
    members[outside].evaluate(CAMERA, False)
    expect(person(viewer, outside).get_by_test_id("media-camera")).to_have_count(0)
    for ctx in contexts:
        ctx.close()


def test_a_small_room_is_listed_whole_by_name(
    make_server: Any, browser: Any, open_chat: Any
) -> None:
    server = make_server(PRESENCE_BATCH="0.05", PRESENCE_GRACE="0.3")
    contexts, members = open_members(server, browser, ["Cy", "Ada", "Bea"])
    viewer = open_chat(server, "Viewer")
    count = viewer.page.get_by_test_id("people-count")
    people = viewer.page.locator('li[data-testid="person"]')

    expect(count).to_have_text("4")
    expect(people.get_by_test_id("person-name")).to_have_text(["Viewer", "Ada", "Bea", "Cy"])
    expect(viewer.page.get_by_test_id("people-more")).to_have_count(0)
    assert viewer.page.evaluate("() => window.lastra.presenceComplete") is True

    cy, ada = list(members)[:2]
    members[cy].evaluate(CAMERA, True)
    expect(person(viewer, cy).get_by_test_id("media-camera")).to_have_attribute("data-on", "true")
    members[ada].evaluate("() => window.member.destroy()")
    expect(count).to_have_text("3")
    expect(person(viewer, ada)).to_have_count(0)  # removed after the grace period
    for ctx in contexts:
        ctx.close()
