"""A large room in the bundled page (protocol §8): the snapshot is partial, the page pages.

The server lists at most 3 users in a newcomer's ``presence``; the sidebar must still
show the right online count at once and, once the client has paged, every member.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import create_session

pytestmark = [pytest.mark.browser]

MEMBERS = 7

OPEN_MEMBER = """async (token) => {
  const { LastraClient } = await import('/lastra-client.js');
  window.member = new LastraClient({ token });
  await new Promise((r) => window.member.on('ready', r));
}"""


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_the_sidebar_counts_and_lists_everyone_above_the_threshold(
    make_server: Any, browser: Any, open_chat: Any, transport: str
) -> None:
    server = make_server(
        TRANSPORT=transport, PRESENCE_SNAPSHOT_MAX="3", PRESENCE_BATCH="0.05", PRESENCE_GRACE="0.3"
    )
    members = [create_session(server, f"Member {i}") for i in range(MEMBERS)]
    contexts = [browser.new_context() for _ in members]  # one each: SSE's 6-per-origin cap
    crowd = [ctx.new_page() for ctx in contexts]
    for page, member in zip(crowd, members, strict=True):
        page.goto(server.http + "/healthz")
        page.evaluate(OPEN_MEMBER, member["token"])

    viewer = open_chat(server, "Viewer")
    viewer.wait_connected(transport)
    count = viewer.page.get_by_test_id("people-count")
    people = viewer.page.locator('li[data-testid="person"]')
    expect(count).to_have_text(str(MEMBERS + 1))
    expect(people).to_have_count(MEMBERS + 1)  # 3 + itself in the snapshot: the rest was paged
    for i in range(MEMBERS):
        expect(viewer.person(f"Member {i}")).to_have_count(1)

    for page in crowd[:2]:
        page.evaluate("() => window.member.destroy()")
    expect(count).to_have_text(str(MEMBERS - 1))  # exact diffs, the counts with them
    expect(people).to_have_count(MEMBERS - 1)
    expect(viewer.person("Member 0")).to_have_count(0)
    for ctx in contexts:
        ctx.close()
