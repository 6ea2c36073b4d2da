"""SSE-era tabs on ``LASTRA_LEGACY_WIRE`` (issue 16; ``../shared/LEGACY_WIRE.md``).

``LegacyTab`` plays the old client's wire exactly: an EventSource-like ``GET
/api/chat-stream?userId=&userName=`` (default headers, no token, no
``Last-Event-ID``), bare-JSON events under the old names, and the old POST bodies
with the browser's ``Origin``. Its cookie jar is the browser's: the stream's
``Set-Cookie`` goes with every later POST, as in Chromium (tests/browser checks that).
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support import clients
from support.clients import (
    TIMEOUT,
    SseClient,
    WsClient,
    aio,
    asession,
    async_http,
    running_server,
    shared_server,
    uniq,
    user_entry,
)
from support.server import Server

LEGACY = {"LEGACY_WIRE": "true", "SSE_KEEPALIVE": "0.5", "AI_OFFLINE_DELAY": "0.002"}
ADMIN = "admin-token-for-the-legacy-tests-0123"

Match = Callable[[Any], bool] | None


def legacy_id() -> str:
    """``user-<Date.now()>-<≤7 base36>``, as app/plugins/clientId.client.ts makes it."""
    tail = "".join(random.choices(string.ascii_lowercase + string.digits, k=7))
    return f"user-{int(time.time() * 1000)}-{tail}"


class LegacyTab:
    """One unmodified SSE-era tab: its stream, its POSTs, what it received."""

    def __init__(self, srv: Server, name: str, user_id: str | None = None) -> None:
        self.srv = srv
        self.user_id = user_id or legacy_id()
        self.user_name = name
        self.http = async_http(srv.http, httpx.Timeout(5.0, read=None))
        self.events: list[tuple[str, Any]] = []
        self.status: int | None = None
        self._new = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._response: httpx.Response | None = None

    @property
    def origin(self) -> dict[str, str]:
        return {"Origin": self.srv.http}

    async def open(self) -> LegacyTab:
        """``new EventSource('/api/chat-stream?' + URLSearchParams({userId, userName}))``."""
        params = {"userId": self.user_id, "userName": self.user_name}
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        request = self.http.build_request("GET", "/api/chat-stream", params=params, headers=headers)
        self._response = await self.http.send(request, stream=True)
        self.status = self._response.status_code
        if self.status == 200:
            self._reader = asyncio.create_task(self._read(self._response))
        else:
            await self._response.aread()
        return self

    async def _read(self, response: httpx.Response) -> None:
        event, data = "message", []
        async for line in response.aiter_lines():
            assert not line.startswith(("id:", "retry:")), f"not the old wire: {line!r}"
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                async with self._new:
                    self.events.append((event, json.loads("\n".join(data))))
                    self._new.notify_all()
                event, data = "message", []

    async def expect(self, name: str, where: Match = None, timeout: float = TIMEOUT) -> Any:
        """The first ``name`` event (matching ``where``) received so far or within ``timeout``."""

        def found() -> Any:
            for got, data in self.events:
                if got == name and (where is None or where(data)):
                    return data
            return None

        async with self._new:
            await asyncio.wait_for(self._new.wait_for(lambda: found() is not None), timeout)
        return found()

    def seen(self, name: str) -> list[Any]:
        return [data for got, data in self.events if got == name]

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """``$fetch(path, {method: 'POST', body})``: JSON, same origin, the tab's cookies."""
        return await self.http.post(path, json=body, headers=self.origin)

    async def say(self, content: str) -> httpx.Response:
        body = {"userId": self.user_id, "userName": self.user_name, "content": content}
        return await self.post("/api/chat-message", body)

    async def typing(self, on: bool) -> httpx.Response:
        body = {"userId": self.user_id, "userName": self.user_name, "isTyping": on}
        return await self.post("/api/chat-typing", body)

    async def signal(self, **fields: Any) -> httpx.Response:
        body = {"userId": self.user_id, "userName": self.user_name, **fields}
        return await self.post("/api/chat-signal", body)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._response is not None:
            await self._response.aclose()
        await self.http.aclose()


def track(t: LegacyTab) -> LegacyTab:
    """Closed by ``@aio`` in the test's own event loop, pass or fail."""
    clients._open_clients.append(t)  # type: ignore[arg-type]
    return t


async def tab(srv: Server, name: str | None = None, **kw: Any) -> LegacyTab:
    """An open legacy tab that got its greeting."""
    t = track(LegacyTab(srv, name or uniq("Old"), **kw))
    await t.open()
    assert t.status == 200, t.status
    await t.expect("bot-state")
    return t


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    **LEGACY,
    "ADMIN_TOKEN": ADMIN,
}


# ------------------------------------------------------------------------------- tests


@aio
async def test_greeting_is_the_old_one_in_the_old_order(srv: Server) -> None:
    ada = await tab(srv, "Ada")
    names = [name for name, _ in ada.events]
    assert names[:3] == ["history", "user-list", "bot-state"], names
    history, users, bots = (ada.events[i][1] for i in range(3))
    assert isinstance(history, list)
    me = next(u for u in users if u["userId"] == ada.user_id)
    assert me["userName"] == "Ada" and isinstance(me["joinedAt"], int)
    assert me["isTyping"] is False and set(me["mediaState"]) == {"webcam", "microphone", "screen"}
    assert any(u["userId"].startswith("ai-") and u["joinedAt"] == 0 for u in users)
    assert bots and all(isinstance(v, bool) for v in bots.values())
    assert ada.seen("ready") == [] and ada.seen("presence") == []


@aio
async def test_legacy_tab_chats_both_ways_with_ws_and_sse(srv: Server) -> None:
    old = await tab(srv, "Olga")
    wes = await WsClient.open(srv, await asession(srv.http, uniq("Wes")))
    sue = await SseClient.open(srv, await asession(srv.http, uniq("Sue")))

    # one presence: the old tab is listed for the new clients, and they in its user-list
    assert user_entry(wes.presence["users"], old.user_id)["userName"] == "Olga"
    for new in (wes, sue):
        await old.expect(
            "user-list", lambda us, u=new.user.userId: any(x["userId"] == u for x in us)
        )

    # legacy -> new: {success, messageId}, the new clients get a chat with that id
    resp = await old.say("hello from the old tab")
    assert resp.status_code == 200, resp.text
    reply = resp.json()
    assert reply["success"] is True and isinstance(reply["messageId"], str)
    for new in (wes, sue):
        env = await new.expect("chat", lambda d: d["id"] == reply["messageId"])
        assert env["data"]["userId"] == old.user_id and env["data"]["userName"] == "Olga"
        assert env["data"]["text"] == "hello from the old tab"
    # ...and the old tab gets no echo of its own message
    await wes.chat("after the echo would have come")
    await old.expect("message", lambda m: m["content"] == "after the echo would have come")
    assert not [m for m in old.seen("message") if m["id"] == reply["messageId"]]

    # new -> legacy: the old Msg shape
    for new in (wes, sue):
        text = f"hi Olga from {new.transport}"
        sent = await new.chat(text)
        assert sent.ok, sent
        msg = await old.expect("message", lambda m, t=text: m["content"] == t)
        assert msg == {
            "id": sent.data["id"],
            "userId": new.user.userId,
            "userName": new.user.userName,
            "content": text,
            "timestamp": msg["timestamp"],
            "type": "user",
        }
        assert abs(msg["timestamp"] - time.time() * 1000) < 60_000

    # typing both ways; the old tab never sees its own
    assert (await old.typing(True)).status_code == 200
    await wes.expect("typing", lambda d: d["userId"] == old.user_id and d["isTyping"])
    await sue.expect("typing", lambda d: d["userId"] == old.user_id and d["isTyping"])
    assert (await wes.request("typing", {"isTyping": True})).ok
    got = await old.expect("typing", lambda d: d["userId"] == wes.user.userId)
    assert got == {"userId": wes.user.userId, "userName": wes.user.userName, "isTyping": True}
    assert not [t for t in old.seen("typing") if t["userId"] == old.user_id]


@aio
async def test_history_clear_and_bot_state_reach_everyone(srv: Server) -> None:
    wes = await WsClient.open(srv, await asession(srv.http, uniq("Wes")))
    sent = await wes.chat("for the history")
    old = await tab(srv)
    assert any(m["id"] == sent.data["id"] and m["type"] == "user" for m in old.events[0][1])

    # clear from the old tab (any of its cookies will do): everyone, the clearer too
    resp = await old.post("/api/chat-clear", {"userName": old.user_name})
    assert resp.status_code == 200, resp.text
    clear = await old.expect("clear")
    assert clear["clearedBy"] == old.user_name
    assert clear["message"]["content"] == f"{old.user_name} cleared the chat"
    assert clear["message"]["type"] == "system" and clear["message"]["userId"] == "system"
    await wes.expect("clear", lambda d: d["by"]["userId"] == old.user_id)

    # bot-toggle by display name; bot-state is a map keyed by display name
    name = next(iter(old.events[2][1]))
    resp = await old.post("/api/bot-toggle", {"botName": name, "enabled": False})
    assert resp.status_code == 200, resp.text
    await old.expect("bot-state", lambda m: m.get(name) is False)
    await wes.expect(
        "bot-state", lambda d: any(b["displayName"] == name and not b["enabled"] for b in d["bots"])
    )
    assert (await wes.request("bot-toggle", {"bot": _bot_id(wes, name), "enabled": True})).ok
    await old.expect("bot-state", lambda m: m.get(name) is True)

    # GET /api/bots also answers {data: [{name, role, triggers}]}
    async with async_http(srv.http) as http:
        listed = (await http.get("/api/bots")).json()
    assert {b["name"] for b in listed["data"]} == set(old.events[2][1])
    assert all("role" in b and isinstance(b["triggers"], list) for b in listed["data"])


def _bot_id(client: WsClient, display: str) -> str:
    return str(next(b["name"] for b in client.bots["bots"] if b["displayName"] == display))


@aio
async def test_a_bot_reply_streams_to_the_old_tab(srv: Server) -> None:
    old = await tab(srv)
    wes = await WsClient.open(srv, await asession(srv.http, uniq("Wes")))
    display = next(name for name, on in old.events[2][1].items() if on)
    reply = await wes.request("ai-request", {"prompt": "say hi", "bot": _bot_id(wes, display)})
    assert reply.ok, reply
    rid = reply.data["id"]
    start = await old.expect("ai-start", lambda m: m["id"] == rid, timeout=10)
    assert start["userId"] == "ai" and start["content"] == "" and start["type"] == "ai"
    done = await old.expect("ai-complete", lambda d: d["messageId"] == rid, timeout=10)
    final = await wes.expect("chat", lambda d: d["id"] == rid, timeout=10)
    chunks = [c["chunk"] for c in old.seen("ai-chunk") if c["messageId"] == rid]
    assert chunks and all(c["botName"] == display for c in old.seen("ai-chunk"))
    assert done == {"messageId": rid, "content": final["data"]["text"], "botName": display}
    assert not [m for m in old.seen("message") if m["id"] == rid], "no second copy"


@aio
async def test_calls_between_legacy_tabs_and_not_across(srv: Server) -> None:
    ann, bob = await tab(srv, "Ann"), await tab(srv, "Bob")
    wes = await WsClient.open(srv, await asession(srv.http, uniq("Wes")))
    offer = {"type": "offer", "sdp": "v=0 legacy"}
    resp = await ann.signal(
        type="offer", targetUserId=bob.user_id, streamType="webcam", offer=offer
    )
    assert resp.status_code == 200, resp.text
    got = await bob.expect("webrtc-signal", lambda s: s["type"] == "offer")
    assert got == {
        "userId": ann.user_id,
        "userName": "Ann",
        "type": "offer",
        "targetUserId": bob.user_id,
        "streamType": "webcam",
        "offer": offer,
    }
    # media-state: relayed to the other legacy tabs, and shown in every list
    resp = await ann.signal(type="media-state", mediaState={"webcam": True})
    assert resp.status_code == 200, resp.text
    await bob.expect("webrtc-signal", lambda s: s["type"] == "media-state")
    await bob.expect(
        "user-list",
        lambda us: any(u["userId"] == ann.user_id and u["mediaState"]["webcam"] for u in us),
    )
    await wes.expect(
        "presence-diff",
        lambda d: any(
            u["userId"] == ann.user_id and any(p["media"]["camera"] for p in u["peers"])
            for u in d["upsert"]
        ),
    )
    # across schemes: an offer to a new client is dropped; a new client cannot signal an old tab
    resp = await ann.signal(type="offer", targetUserId=wes.user.userId, offer=offer)
    assert resp.status_code == 200
    old_peer = user_entry(wes.presence["users"], ann.user_id)["peers"][0]
    assert old_peer["ready"] is False and old_peer["transport"] == "sse-legacy"
    assert (await ann.post("/api/chat-ready", {"userId": ann.user_id})).status_code == 200
    refused = await wes.request("webrtc-signal", {"to": old_peer["peerId"], "signal": offer})
    assert refused.code == "not_found", refused
    await wes.chat("barrier")
    await ann.expect("message", lambda m: m["content"] == "barrier")
    assert wes.seen("webrtc-signal") == [] and ann.seen("webrtc-signal") == []


@aio
async def test_a_tab_cannot_post_as_a_signed_user_or_another_tab(srv: Server) -> None:
    ann, bob = await tab(srv, "Ann"), await tab(srv, "Bob")
    signed = await asession(srv.http)
    as_signed = await ann.post(
        "/api/chat-message",
        {"userId": signed.userId, "userName": signed.userName, "content": "it is me"},
    )
    assert as_signed.status_code == 400, as_signed.text  # not a legacy id at all
    as_bob = await ann.post(
        "/api/chat-message", {"userId": bob.user_id, "userName": "Bob", "content": "it is me"}
    )
    assert as_bob.status_code == 403 and as_bob.json()["code"] == "forbidden"
    # a stream may claim a u_ id neither: the legacy namespace is its own
    fake = LegacyTab(srv, "Mallory", user_id=signed.userId)
    track(fake)
    assert (await fake.open()).status == 400
    # no cookie at all: clear and bot-toggle are refused too
    async with async_http(srv.http) as http:
        bare = await http.post("/api/chat-clear", json={"userName": "x"}, headers=ann.origin)
    assert bare.status_code == 403


@aio
async def test_cross_origin_posts_and_streams_are_refused(srv: Server) -> None:
    ann = await tab(srv, "Ann")
    body = {"userId": ann.user_id, "userName": "Ann", "content": "from evil.example"}
    evil = {"Origin": "https://evil.example"}
    resp = await ann.http.post("/api/chat-message", json=body, headers=evil)
    assert resp.status_code == 403 and resp.json()["code"] == "forbidden"
    params = {"userId": legacy_id(), "userName": "Eve"}
    resp = await ann.http.get("/api/chat-stream", params=params, headers=evil)
    assert resp.status_code == 403


@aio
async def test_bad_and_oversized_bodies(srv: Server) -> None:
    ann = await tab(srv, "Ann")
    missing = await ann.post("/api/chat-message", {"userId": ann.user_id, "userName": "Ann"})
    assert missing.status_code == 400
    huge = await ann.say("x" * 70_000)
    assert huge.status_code == 413
    resp = await ann.signal(type="offer", targetUserId=ann.user_id, streamType="camera")
    assert resp.status_code == 400
    async with async_http(srv.http) as http:
        no_name = await http.get("/api/chat-stream", params={"userId": legacy_id()})
    assert no_name.status_code == 400


@aio
async def test_operators_see_old_tabs_as_sse_legacy(srv: Server) -> None:
    old = await tab(srv)
    assert (await old.say("counted")).status_code == 200
    async with async_http(srv.http) as http:
        metrics = (await http.get("/metrics")).text
        stats = await http.get("/api/admin/stats", headers={"Authorization": f"Bearer {ADMIN}"})
    assert 'lastra_connections_open{transport="sse-legacy"}' in metrics
    assert 'lastra_messages_in_total{transport="sse-legacy",type="chat"}' in metrics
    assert 'lastra_messages_out_total{transport="sse-legacy",type="user-list"}' in metrics
    body = stats.json()
    assert body["connections"]["sse-legacy"] >= 1 and body["users"]["sse-legacy"] >= 1
    assert body["window"]["byTransport"]["sse-legacy"]["in"] >= 1


def test_with_the_mode_off_the_old_wire_gets_401(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = shared_server(tmp_path_factory)

    @aio
    async def run() -> None:
        old = track(LegacyTab(srv, "Ada"))
        assert (await old.open()).status == 401
        for path, body in (
            ("/api/chat-message", {"userId": old.user_id, "userName": "Ada", "content": "hi"}),
            ("/api/chat-typing", {"userId": old.user_id, "userName": "Ada", "isTyping": True}),
            ("/api/chat-ready", {"userId": old.user_id}),
            ("/api/chat-signal", {"userId": old.user_id, "userName": "Ada", "type": "offer"}),
            ("/api/bot-toggle", {"botName": "Sol", "enabled": False}),
            ("/api/chat-clear", {"userName": "Ada"}),
        ):
            assert (await old.post(path, body)).status_code == 401, path
        async with async_http(srv.http) as http:
            assert "data" not in (await http.get("/api/bots")).json()

    run()


def test_a_legacy_stream_flood_is_limited_per_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with running_server(tmp_path_factory, **LEGACY, SESSION_RATE="0.01", SESSION_BURST="5") as srv:

        @aio
        async def run() -> None:
            tabs = [LegacyTab(srv, f"Flood{i}") for i in range(8)]
            for t in tabs:
                track(t)
            statuses = [(await t.open()).status for t in tabs]
            assert statuses[:5] == [200] * 5 and statuses[5:] == [429] * 3, statuses
            # a tab this browser already opened reconnects without paying again
            again = LegacyTab(srv, "Flood0", user_id=tabs[0].user_id)
            again.http.cookies = tabs[0].http.cookies
            track(again)
            assert (await again.open()).status == 200

        run()


def test_the_mode_ends_on_its_date(tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_server(tmp_path_factory, **LEGACY, LEGACY_WIRE_UNTIL="2020-01-01") as srv:

        @aio
        async def run() -> None:
            old = track(LegacyTab(srv, "Late"))
            assert (await old.open()).status == 401

        run()
        log = srv.log()
        assert log.count("legacy wire turned itself off") == 1, log


def test_a_cancelled_bot_reply_ends_with_ai_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    slow = {**LEGACY, "AI_OFFLINE_DELAY": "0.2"}
    with running_server(tmp_path_factory, **slow) as srv:

        @aio
        async def run() -> None:
            old = await tab(srv)
            wes = await WsClient.open(srv, await asession(srv.http, uniq("Wes")))
            display = next(name for name, on in old.events[2][1].items() if on)
            bot = _bot_id(wes, display)
            reply = await wes.request("ai-request", {"prompt": "a long story", "bot": bot})
            assert reply.ok, reply
            rid = reply.data["id"]
            await old.expect("ai-chunk", lambda c: c["messageId"] == rid, timeout=10)
            # the old tab's /clear cancels the reply in flight: it ends with ai-error
            resp = await old.post("/api/chat-clear", {"userName": old.user_name})
            assert resp.status_code == 200, resp.text
            failed = await old.expect("ai-error", lambda e: e["messageId"] == rid, timeout=10)
            assert isinstance(failed["error"], str) and failed["error"]
            await wes.expect("ai-stream", lambda d: d["id"] == rid and "error" in d)
            assert old.seen("ai-complete") == []

        run()
