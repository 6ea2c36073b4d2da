"""Calls: WebRTC camera, microphone and screen sharing between real Chromium pages, one on
SSE+POST and one on WebSocket, with this server as the only signaling channel.

The pages run in the Chromium of ``open_call``: fake camera and microphone (a test pattern
and a beep) and ``getDisplayMedia`` that picks a source by itself. Headless Chromium cannot
capture a real screen (``NotReadableError: Could not start video source``); with
``--use-fake-device-for-media-stream`` its ``getDisplayMedia`` returns Chromium's synthetic
1280x720 capture source instead, through the real API, which is what these tests share.

Media is checked with ``getStats()`` (``lastraCall.stats()`` in the page): bytes received,
per kind, must grow on every side. Figures land in ``test-artifacts/call-figures.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, ChatPage, rollout_server

pytestmark = [pytest.mark.browser]

FIGURES: dict[str, Any] = {}
CONNECT_TIMEOUT = 20_000


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    yield FIGURES
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "call-figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")


# ------------------------------------------------------------------ helpers


def join_call(chat: ChatPage) -> None:
    chat.page.get_by_test_id("call-join").click()
    expect(chat.page.get_by_test_id("call-join")).to_have_attribute("data-state", "joined")


def stats(chat: ChatPage, stream: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = chat.page.evaluate("lastraCall.stats()")
    return [r for r in rows if stream is None or r["stream"] == stream]


DUMP = """async () => ({
  me: lastraCall.userName, peerId: lastraCall.peerId, joined: lastraCall.joined,
  declined: [...lastraCall.declined],
  presence: [...lastraCall.presence.values()],
  links: (await lastraCall.stats()).map(({peerId, userName, stream, polite, connectionState,
    signalingState, collisions}) => ({peerId, userName, stream, polite, connectionState,
    signalingState, collisions})),
})"""


def wait_connected_to(chat: ChatPage, names: set[str], stream: str = "camera") -> None:
    """Until this page's `stream` connections are exactly to `names`, all `connected`."""
    try:
        chat.page.wait_for_function(
            """([names, stream]) => {
              const ok = [...lastraCall.remotes.values()]
                .filter((r) => r.links[stream]
                  && r.links[stream].pc.connectionState === 'connected')
                .map((r) => r.userName).sort();
              return lastraCall.remotes.size === names.length
                && JSON.stringify(ok) === JSON.stringify(names);
            }""",
            arg=[sorted(names), stream],
            timeout=CONNECT_TIMEOUT,
        )
    except Exception as exc:
        browser = chat.context.browser
        pages = [page for ctx in browser.contexts for page in ctx.pages] if browser else []
        dumps = [json.dumps(page.evaluate(DUMP)) for page in pages if not page.is_closed()]
        raise AssertionError(f"not connected to {names}:\n" + "\n".join(dumps)) from exc


POLL = """async ([arg, timeout]) => {
  const test = %s;
  const deadline = performance.now() + timeout;
  for (;;) {
    if (await test(arg)) return true;
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}"""


def poll(chat: ChatPage, predicate: str, arg: Any = None, timeout: float = 15_000) -> None:
    """Until the async `predicate(arg)` is true in the page. (wait_for_function does not
    await a promise: it takes the promise itself as true. The predicate is spliced into
    the source rather than eval'd, which the page's CSP forbids.)"""
    assert chat.page.evaluate(POLL % predicate, [arg, timeout]), f"timed out: {predicate}"


def wait_bytes_growing(
    chat: ChatPage,
    stream: str = "camera",
    kinds: tuple[str, ...] = ("audio", "video"),
    by: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Until every `stream` connection has received more bytes of each kind (by default
    2 kB of audio, 20 kB of video: a fraction of a second of each).

    Returns the figures: bytes before/after per peer, the wait, and the rate in kbit/s.
    """
    by = by or {"audio": 2_000, "video": 20_000}
    before = {r["peerId"]: r for r in stats(chat, stream)}
    assert before, f"no {stream} connections"
    started = time.monotonic()
    poll(
        chat,
        """async ([before, stream, kinds, by]) => {
          const rows = (await lastraCall.stats()).filter((r) => r.stream === stream);
          return rows.length === Object.keys(before).length && rows.every((r) =>
            before[r.peerId] && kinds.every((k) =>
              r.bytesReceived[k] >= before[r.peerId].bytesReceived[k] + by[k]));
        }""",
        [before, stream, list(kinds), by],
    )
    took = time.monotonic() - started
    after = {r["peerId"]: r for r in stats(chat, stream)}
    return {
        "seconds": round(took, 2),
        "peers": {
            after[p]["userName"]: {
                k: {
                    "bytes": [before[p]["bytesReceived"][k], after[p]["bytesReceived"][k]],
                    "kbit/s": round(
                        (after[p]["bytesReceived"][k] - before[p]["bytesReceived"][k])
                        * 8
                        / 1000
                        / max(took, 0.001)
                    ),
                }
                for k in kinds
            }
            for p in after
        },
    }


def tile(chat: ChatPage, label: str, kind: str = "camera") -> Any:
    page = chat.page
    return page.locator(f'[data-testid="tile"][data-kind="{kind}"]').filter(
        has=page.get_by_test_id("tile-name").get_by_text(label, exact=True)
    )


def tiles(chat: ChatPage) -> Any:
    return chat.page.get_by_test_id("tile")


def link_sdp(chat: ChatPage, name: str, stream: str = "camera") -> dict[str, str]:
    """Both descriptions of this page's connection to `name` (to prove nothing renegotiated)."""
    result: dict[str, str] = chat.page.evaluate(
        """([name, stream]) => {
          const r = [...lastraCall.remotes.values()].find((x) => x.userName === name);
          const pc = r.links[stream].pc;
          return {local: pc.localDescription.sdp, remote: pc.remoteDescription.sdp};
        }""",
        [name, stream],
    )
    return result


def two_party_call(make_server: Any, open_call: Any) -> tuple[ChatPage, ChatPage]:
    """Ada on WebSocket and Bea forced to SSE by the rollout flag, both in the call."""
    srv, sessions = rollout_server(make_server, sse=("Bea",))
    ada = open_call(srv, "Ada")
    ada.wait_connected("ws")
    bea = open_call(srv, session=sessions["Bea"])
    bea.wait_connected("sse")
    join_call(ada)
    join_call(bea)
    wait_connected_to(ada, {"Bea"})
    wait_connected_to(bea, {"Ada"})
    return ada, bea


# ------------------------------------------------------------------ tests


def test_sse_and_websocket_pages_call_share_a_screen_and_turn_the_camera_off(
    make_server: Any, open_call: Any
) -> None:
    srv, sessions = rollout_server(make_server, sse=("Bea",))
    ada = open_call(srv, "Ada")
    ada.wait_connected("ws")
    posts: list[str] = []
    bea = open_call(
        srv,
        session=sessions["Bea"],
        before_goto=lambda page: page.on(
            "request",
            lambda r: posts.append(r.url.split("/api/")[-1]) if r.method == "POST" else None,
        ),
    )
    bea.wait_connected("sse")

    # Ada is alone in the call; Bea's button says someone is there.
    join_call(ada)
    expect(tiles(ada)).to_have_count(1)
    expect(tile(ada, "Ada (you)")).to_have_count(1)
    expect(bea.page.get_by_test_id("call-join")).to_have_text("Join call (1)")
    expect(bea.person("Ada").get_by_test_id("media-camera")).to_have_attribute("data-on", "true")

    started = time.monotonic()
    join_call(bea)
    wait_connected_to(ada, {"Bea"})
    wait_connected_to(bea, {"Ada"})
    connected_after = round(time.monotonic() - started, 2)

    # Media flows both ways: audio and video bytes grow on each side.
    growth = {"Ada receives": wait_bytes_growing(ada), "Bea receives": wait_bytes_growing(bea)}
    (ada_row,) = stats(ada, "camera")
    (bea_row,) = stats(bea, "camera")
    assert ada_row["receiving"] == bea_row["receiving"] == {"audio": 1, "video": 1}
    # Bea (SSE) signaled with POSTs; her page said it was ready for offers.
    assert "chat-ready" in posts
    assert "chat-signal" in posts
    # Tiles with names, on both pages.
    for chat, other in ((ada, "Bea"), (bea, "Ada")):
        expect(tiles(chat)).to_have_count(2)
        expect(tile(chat, other)).to_have_attribute("data-state", "connected")
        expect(tile(chat, other)).to_have_attribute("data-camera", "on")

    # Screen sharing: a second video track, on its own connection, shown as its own tile.
    ada.page.get_by_test_id("call-screen").click()
    expect(tile(bea, "Ada — screen", "screen")).to_have_count(1)
    expect(bea.person("Ada").get_by_test_id("media-screen")).to_have_attribute("data-on", "true")
    wait_connected_to(bea, {"Ada"}, "screen")
    screen_growth = wait_bytes_growing(bea, "screen", ("video",))
    videos_from_ada = sum(r["receiving"]["video"] for r in stats(bea))
    assert videos_from_ada == 2
    expect(tile(bea, "Ada — screen", "screen").get_by_test_id("tile-video")).to_have_js_property(
        "videoWidth", 1280
    )
    ARTIFACTS.mkdir(exist_ok=True)
    bea.page.screenshot(path=str(ARTIFACTS / "call.png"))

    # Camera off: no renegotiation, presence (and the tile) show it on the other page.
    sdp_before = link_sdp(bea, "Ada")
    ada.page.get_by_test_id("call-camera").click()
    expect(ada.page.get_by_test_id("call-camera")).to_have_attribute("aria-pressed", "false")
    expect(bea.person("Ada").get_by_test_id("media-camera")).to_have_attribute("data-on", "false")
    expect(bea.person("Ada").get_by_test_id("media-mic")).to_have_attribute("data-on", "true")
    expect(tile(bea, "Ada")).to_have_attribute("data-camera", "off")
    assert link_sdp(bea, "Ada") == sdp_before
    # Mute, the same way.
    ada.page.get_by_test_id("call-mic").click()
    expect(bea.person("Ada").get_by_test_id("media-mic")).to_have_attribute("data-on", "false")
    expect(tile(bea, "Ada")).to_have_attribute("data-mic", "off")
    assert link_sdp(bea, "Ada") == sdp_before

    # Stop sharing (removeTrack, renegotiated): the screen tile goes; sharing again reuses
    # the same transceiver.
    ada.page.get_by_test_id("call-screen").click()
    expect(tile(bea, "Ada — screen", "screen")).to_have_count(0)
    expect(bea.person("Ada").get_by_test_id("media-screen")).to_have_count(0)
    ada.page.get_by_test_id("call-screen").click()
    expect(tile(bea, "Ada — screen", "screen")).to_have_count(1)
    transceivers = ada.page.evaluate(
        "[...lastraCall.remotes.values()][0].links.screen.pc.getTransceivers().length"
    )
    assert transceivers == 1

    FIGURES["sse+ws call"] = {
        "join to both connected (s)": connected_after,
        "connectMs (ada, bea)": [ada_row["connectMs"], bea_row["connectMs"]],
        "glare (offers that crossed)": ada_row["collisions"] + bea_row["collisions"],
        "bytes received growth": growth,
        "screen bytes growth at Bea": screen_growth,
    }


def test_three_pages_connect_pairwise_and_a_closed_page_leaves_no_tile(
    make_server: Any, open_call: Any
) -> None:
    srv, sessions = rollout_server(make_server, sse=("Cy",))
    ada = open_call(srv, "Ada")
    bea = open_call(srv, "Bea")
    cy = open_call(srv, session=sessions["Cy"])
    ada.wait_connected("ws")
    bea.wait_connected("ws")
    cy.wait_connected("sse")
    started = time.monotonic()
    for chat in (ada, bea, cy):  # all at once: the crossing offers resolve themselves
        chat.page.get_by_test_id("call-join").click()
    wait_connected_to(ada, {"Bea", "Cy"})
    wait_connected_to(bea, {"Ada", "Cy"})
    wait_connected_to(cy, {"Ada", "Bea"})
    connected_after = round(time.monotonic() - started, 2)
    growth = {}
    for chat, name in ((ada, "Ada"), (bea, "Bea"), (cy, "Cy")):
        expect(tiles(chat)).to_have_count(3)
        growth[f"{name} receives"] = wait_bytes_growing(chat)
    # Two copies of each camera go up: each is capped at min(0.9, 2 / 2) Mbit/s.
    caps = ada.page.evaluate(
        """() => [...lastraCall.remotes.values()].map((r) =>
          r.links.camera.senders.get('camera').getParameters().encodings[0].maxBitrate)"""
    )
    assert caps == [900_000, 900_000]
    FIGURES["three-way mesh"] = {
        "joins to all pairwise connected (s)": connected_after,
        "connectMs": {
            name: {r["userName"]: r["connectMs"] for r in stats(chat, "camera")}
            for chat, name in ((ada, "Ada"), (bea, "Bea"), (cy, "Cy"))
        },
        "bytes received growth": growth,
    }

    cy.page.close()
    for chat in (ada, bea):
        expect(tile(chat, "Cy")).to_have_count(0)
        expect(tiles(chat)).to_have_count(2)
    wait_connected_to(ada, {"Bea"})
    wait_connected_to(bea, {"Ada"})


def test_leaving_says_bye_and_joining_again_reconnects(make_server: Any, open_call: Any) -> None:
    ada, bea = two_party_call(make_server, open_call)
    ada.page.get_by_test_id("call-leave").click()
    expect(ada.page.get_by_test_id("call-join")).to_have_text("Join call (1)")
    expect(tiles(ada)).to_have_count(0)
    expect(ada.page.get_by_test_id("call")).to_be_hidden()
    expect(tile(bea, "Ada")).to_have_count(0)
    expect(bea.person("Ada").get_by_test_id("media-camera")).to_have_count(0)
    assert ada.page.evaluate("lastraCall.remotes.size") == 0
    # Ada's devices are released.
    assert ada.page.evaluate("lastraCall.localStream.getTracks().length") == 0

    join_call(ada)
    wait_connected_to(ada, {"Bea"})
    wait_connected_to(bea, {"Ada"})
    wait_bytes_growing(bea)


def test_a_lost_connection_drops_the_tile_and_the_call_re_forms_after_reconnect(
    make_server: Any, open_call: Any
) -> None:
    """No bye: Bea's SSE stream just drops. Presence shows her peer gone, which is enough
    for Ada to clean up; Bea comes back as a new peer and the call re-forms by itself."""
    ada, bea = two_party_call(make_server, open_call)
    old_peer = bea.page.evaluate("lastraCall.peerId")
    bea.context.set_offline(True)
    expect(tile(ada, "Bea")).to_have_count(0)
    expect(tiles(ada)).to_have_count(1)
    started = time.monotonic()
    bea.context.set_offline(False)
    bea.wait_connected("sse")
    assert bea.page.evaluate("lastraCall.peerId") != old_peer
    wait_connected_to(ada, {"Bea"})
    wait_connected_to(bea, {"Ada"})
    FIGURES["re-formed after reconnect (s)"] = round(time.monotonic() - started, 2)
    expect(tile(ada, "Bea")).to_have_attribute("data-state", "connected")
    expect(tiles(bea)).to_have_count(2)
    wait_bytes_growing(ada)
    wait_bytes_growing(bea)


def test_ice_restart_gets_new_credentials_and_the_call_goes_on(
    make_server: Any, open_call: Any
) -> None:
    ada, bea = two_party_call(make_server, open_call)
    (before,) = stats(bea, "camera")
    # What a network change (or connectionState failed / disconnected) triggers.
    ada.page.evaluate("lastraCall.restartIce('test')")
    poll(
        bea,
        """async (old) => {
          const [row] = (await lastraCall.stats()).filter((r) => r.stream === 'camera');
          return row && row.remoteUfrag && row.remoteUfrag !== old
            && row.connectionState === 'connected' && row.signalingState === 'stable';
        }""",
        before["remoteUfrag"],
        CONNECT_TIMEOUT,
    )
    (ada_row,) = stats(ada, "camera")
    assert ada_row["iceRestarts"] == 1
    wait_bytes_growing(bea)
    wait_bytes_growing(ada)


AT_THE_SAME_TIME = """([at, what]) => { setTimeout(() => {
  if (what === 'restart') lastraCall.restartIce('glare test'); else lastraCall.startScreen();
}, at - Date.now()); }"""


def test_crossing_offers_resolve_themselves(make_server: Any, open_call: Any) -> None:
    """Glare: both pages renegotiate at the same instant (same clock: one machine), twice."""
    ada, bea = two_party_call(make_server, open_call)
    ufrags = {c.page: stats(c, "camera")[0]["remoteUfrag"] for c in (ada, bea)}
    at = ada.page.evaluate("Date.now() + 300")
    for chat in (ada, bea):
        chat.page.evaluate(AT_THE_SAME_TIME, [at, "restart"])
    for chat in (ada, bea):
        poll(
            chat,
            """async (old) => {
              const [r] = (await lastraCall.stats()).filter((x) => x.stream === 'camera');
              return r.remoteUfrag !== old && r.connectionState === 'connected'
                && r.signalingState === 'stable';
            }""",
            ufrags[chat.page],
            CONNECT_TIMEOUT,
        )
    camera_glare = sum(stats(c, "camera")[0]["collisions"] for c in (ada, bea))

    # Both start sharing at once: two new screen connections' offers cross.
    at = ada.page.evaluate("Date.now() + 300")
    for chat in (ada, bea):
        chat.page.evaluate(AT_THE_SAME_TIME, [at, "screen"])
    expect(tile(ada, "Bea — screen", "screen")).to_have_count(1)
    expect(tile(bea, "Ada — screen", "screen")).to_have_count(1)
    wait_connected_to(ada, {"Bea"}, "screen")
    wait_connected_to(bea, {"Ada"}, "screen")
    wait_bytes_growing(ada, "screen", ("video",))
    wait_bytes_growing(bea, "screen", ("video",))
    wait_bytes_growing(ada)
    screen_glare = sum(stats(c, "screen")[0]["collisions"] for c in (ada, bea))
    FIGURES["glare"] = {"camera (ICE restarts)": camera_glare, "screen (both share)": screen_glare}
    assert camera_glare + screen_glare >= 1, "the offers did not cross: no glare was tested"


def test_switching_the_microphone_replaces_the_track_without_renegotiating(
    make_server: Any, open_call: Any
) -> None:
    ada, bea = two_party_call(make_server, open_call)
    mics = ada.page.get_by_test_id("device-mic").locator("option")
    expect(mics).to_have_count(3)  # Chromium's fake devices: three microphones, one camera
    expect(ada.page.get_by_test_id("device-camera").locator("option")).to_have_count(1)
    sdp_before = link_sdp(ada, "Bea")
    label = mics.nth(2).inner_text()
    ada.page.get_by_test_id("device-mic").select_option(label=label)
    ada.page.wait_for_function(
        """(label) => {
          const r = [...lastraCall.remotes.values()][0];
          const t = r.links.camera.senders.get('mic').track;
          return t && t.label === label && t.readyState === 'live';
        }""",
        arg=label,
    )
    assert ada.page.evaluate("lastraCall.local.mic.label") == label
    assert ada.page.evaluate("JSON.parse(localStorage.getItem('lastra.devices')).mic") is not None
    assert link_sdp(ada, "Bea") == sdp_before
    wait_bytes_growing(bea, kinds=("audio",))


def test_the_mesh_is_capped_with_a_clear_message(make_server: Any, open_call: Any) -> None:
    """A cap of 2 (set per browser in localStorage) instead of 6, to need only a few pages."""
    cap = "localStorage.setItem('lastra.meshLimit', '2');"
    srv = make_server()
    ada = open_call(srv, "Ada", init_script=cap)
    bea = open_call(srv, "Bea", init_script=cap)
    join_call(ada)
    join_call(bea)
    wait_connected_to(ada, {"Bea"})

    # Cy's page knows the cap too: it does not even try.
    cy = open_call(srv, "Cy", init_script=cap)
    expect(cy.page.get_by_test_id("call-join")).to_have_text("Join call (2)")
    cy.page.get_by_test_id("call-join").click()
    expect(cy.page.get_by_test_id("call-notice")).to_be_visible()
    expect(cy.page.get_by_test_id("call-notice")).to_contain_text("The call is full")
    expect(cy.page.get_by_test_id("call-join")).to_have_attribute("data-state", "idle")

    # Dee's page allows 6, but the members are full: they turn her down, and say so.
    dee = open_call(srv, "Dee")
    join_call(dee)
    for chat in (ada, bea):
        expect(chat.page.get_by_test_id("call-notice")).to_contain_text("call is full")
        expect(tiles(chat)).to_have_count(2)
    wait_connected_to(ada, {"Bea"})
    # Dee's page shows why it stays alone.
    dee.page.wait_for_function("() => lastraCall.remotes.size === 0")
    expect(dee.page.get_by_test_id("call-notice")).to_contain_text("may be full")
    expect(tiles(dee)).to_have_count(1)
