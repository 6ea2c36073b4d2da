"""LastraClient (`/lastra-client.js`) used directly, as a third-party page would."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import WebSocketRoute

pytestmark = [pytest.mark.browser]


@pytest.fixture
def blank(server: Any, browser: Any) -> Any:
    """A same-origin document with no app on it (the health check)."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(server.http + "/healthz")
    yield page
    ctx.close()


def test_sse_parser_survives_any_chunking(blank: Any) -> None:
    result = blank.evaluate(
        """async () => {
          const { SseParser } = await import('/lastra-transports.js');
          const stream = ': keep-alive\\r\\n\\r\\n' +
            'event: chat\\r\\nid: e1:7\\r\\n' +
            'data: {"type":"chat","seq":7,\\r\\ndata: "data":{}}\\r\\n\\r\\n' +
            'event: typing\\ndata: {"type":"typing","data":{"isTyping":true}}\\n\\n' +
            'data: {"type":"pong","data":{}}\\r\\r\\n';
          const runs = [];
          for (const size of [1, 2, 3, 5, 7, 1000]) {
            const events = []; let comments = 0;
            const p = new SseParser((e) => events.push(e), () => { comments += 1; });
            for (let i = 0; i < stream.length; i += size) p.feed(stream.slice(i, i + size));
            runs.push({ events, comments, lastEventId: p.lastEventId });
          }
          return runs;
        }"""
    )
    for run in result:
        assert run["comments"] == 1
        assert [e["event"] for e in run["events"]] == ["chat", "typing", "message"]
        assert run["events"][0]["data"] == '{"type":"chat","seq":7,\n"data":{}}'
        assert run["events"][0]["id"] == "e1:7"
        assert run["lastEventId"] == "e1:7"


def test_backoff_has_full_jitter_and_a_limit(blank: Any) -> None:
    out = blank.evaluate(
        """async () => {
          const { LastraClient } = await import('/lastra-client.js');
          // A server that is never there: every attempt fails at GET /api/transport.
          const c = new LastraClient({
            url: 'http://127.0.0.1:9', token: 'x.e30.x', reconnectLimit: 4,
            reconnectInterval: 40, autoConnect: false,
          });
          const delays = []; const states = [];
          c.on('reconnecting', (d) => delays.push(d));
          c.on('message-state', (m) => states.push(m.state));
          c.send('chat', { text: 'will not make it' });
          const done = new Promise((r) => c.on('status', (s) => {
            if (s.status === 'CLOSED' && s.error && s.error.code === 'reconnect_limit') r(s);
          }));
          c.connect();
          const final = await done;
          const out = { delays, states, final, outbox: c.outbox };
          c.destroy();
          return out;
        }"""
    )
    assert [d["attempt"] for d in out["delays"]] == [1, 2, 3, 4]
    for i, d in enumerate(out["delays"]):
        assert 0 <= d["delay"] <= 40 * 2**i
    assert out["states"] == ["sending", "failed"]
    assert out["outbox"][0]["state"] == "failed"
    assert out["final"]["failed"] == 1


def test_session_is_created_once_and_remembered(blank: Any) -> None:
    out = blank.evaluate(
        """async () => {
          const { LastraClient } = await import('/lastra-client.js');
          const open = (c) => new Promise((r) => c.on('ready', r));
          const a = new LastraClient({ userName: 'Lib User' });
          const readyA = await open(a);
          a.destroy();
          const stored = JSON.parse(localStorage.getItem('lastra.session'));
          const b = new LastraClient({ userName: 'Lib User' });
          const readyB = await open(b);
          const sent = await new Promise((r) => {
            b.on('message-state', (m) => { if (m.state === 'sent') r(m); });
            b.send('chat', { text: 'from the library' });
          });
          b.destroy();
          return { a: readyA.userId, b: readyB.userId, stored, sent, status: b.status };
        }"""
    )
    assert out["a"] == out["b"] == out["stored"]["userId"]
    assert out["stored"]["userName"] == "Lib User"
    assert out["sent"]["id"] and isinstance(out["sent"]["seq"], int)
    assert out["status"] == "CLOSED"


def test_server_refusing_websocket_4403_falls_back(make_server: Any, open_chat: Any) -> None:
    """The server says SSE (flag) while the client insists on trying WebSocket."""
    srv = make_server(TRANSPORT="sse")
    ada = open_chat(srv, "Ada")
    ada.wait_connected("sse")
    assert ada.page.evaluate("window.lastra.fallback") is None
    result = ada.page.evaluate(
        """async () => {
          const { LastraClient } = await import('/lastra-client.js');
          const c = new LastraClient({ userName: 'Probe', transport: 'auto', autoConnect: false });
          c._askTransport = async () => ({ transport: 'ws', reason: 'test' });
          const fellBack = new Promise((r) => c.on('fallback', r));
          const ready = new Promise((r) => c.on('ready', r));
          c.connect();
          const fb = await fellBack; await ready;
          const out = { fb, transport: c.transport };
          c.destroy();
          return out;
        }"""
    )
    assert result["fb"]["reason"] == "transport-disabled"
    assert result["transport"] == "sse"


def test_missing_pongs_mean_a_dead_connection(server: Any, browser: Any) -> None:
    """Library-level: a WebSocket that stops answering pings is dropped and replaced."""
    ctx = browser.new_context()
    page = ctx.new_page()
    swallowed = []

    def no_pongs(route: WebSocketRoute) -> None:
        upstream = route.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str) and '"type":"pong"' in message.replace(" ", ""):
                swallowed.append(message)
                return
            route.send(message)

        upstream.on_message(from_server)

    page.route_web_socket("**/api/chat.ws", no_pongs)
    page.goto(server.http + "/healthz")
    readies = page.evaluate(
        """async () => {
          const { LastraClient } = await import('/lastra-client.js');
          const c = new LastraClient({ userName: 'Pinger', heartbeatInterval: 300, pongTimeout: 300,
                                       reconnectInterval: 50, transport: 'ws' });
          let n = 0;
          await new Promise((resolve) => c.on('ready', () => { n += 1; if (n === 2) resolve(); }));
          c.destroy();
          return n;
        }"""
    )
    assert readies == 2
    assert swallowed, "the client never pinged"
    ctx.close()
