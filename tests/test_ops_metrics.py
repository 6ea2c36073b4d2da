"""``/metrics``, ``/healthz`` and ``/readyz`` as an operator scrapes them (issue 9).

Every test takes a snapshot of ``/metrics``, makes traffic on one transport (or both) with
real clients, and checks that exactly the counters of that traffic moved, with the right
``transport`` label. The server is shared by the module, so tests compare deltas.
"""

from __future__ import annotations

import json

import httpx
from support.clients import (
    SseClient,
    WsClient,
    aio,
    asession,
    async_http,
    room_users,
    uniq,
)
from support.server import Server
from test_ops_support import (
    Snapshot,
    ascrape,
    await_metric,
    delta,
    scrape,
    value,
)

FAMILIES = [
    ("lastra_connections_open", "gauge"),
    ("lastra_connections_opened", "counter"),
    ("lastra_messages_in", "counter"),
    ("lastra_messages_out", "counter"),
    ("lastra_errors", "counter"),
    ("lastra_closes", "counter"),
    ("lastra_resumes", "counter"),
    ("lastra_delivery_latency_seconds", "histogram"),
    ("lastra_outbound_overflow", "counter"),
    ("lastra_bot_requests", "counter"),
    ("lastra_bot_failures", "counter"),
    ("lastra_rollout_assignments", "counter"),
    ("lastra_sessions_created", "counter"),
    ("lastra_connections_refused", "counter"),
]


#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "TRANSPORT": "rollout",
    "WS_ROLLOUT_PERCENT": "100",
    "AI_OFFLINE_DELAY": "0.001",
    "LOG_LEVEL": "info",
}


def open_count(snap: Snapshot, transport: str) -> float:
    return value(snap, "lastra_connections_open", transport=transport)


# ------------------------------------------------------------------ health


def test_healthz_and_readyz_answer_200(srv: Server) -> None:
    with httpx.Client(timeout=5, trust_env=False) as http:
        health = http.get(f"{srv.http}/healthz")
        ready = http.get(f"{srv.http}/readyz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and body["backend"] == "memory"
    assert isinstance(body["storeMs"], int | float) and body["storeMs"] >= 0


def test_metrics_is_prometheus_text_with_every_family(srv: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(timeout=5, trust_env=False) as http:
        resp = http.get(f"{srv.http}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    types = {f.name: f.type for f in text_string_to_metric_families(resp.text)}
    for name, kind in FAMILIES:
        assert types.get(name) == kind, f"{name} ({kind}) missing from /metrics: {sorted(types)}"


# ------------------------------------------------------------------ per transport


@aio
async def test_websocket_traffic_moves_the_ws_counters(srv: Server) -> None:
    before = await ascrape(srv)
    ada = await WsClient.open(srv, await asession(srv.http))
    bob = await WsClient.open(srv, await asession(srv.http))
    opened = await await_metric(
        srv, lambda s: open_count(s, "ws") == open_count(before, "ws") + 2, "2 ws connections open"
    )
    assert delta(before, opened, "lastra_connections_opened_total", transport="ws") == 2

    reply = await ada.chat("metrics over ws")
    assert reply.ok, reply
    await bob.expect("chat", lambda d: d["text"] == "metrics over ws")
    await ada.send("ping", {"t": 1}, ref="p1")
    await ada.expect("pong", lambda d: d.get("ref") == "p1")
    assert (await ada.request("no-such-type", {})).code == "unknown_type"
    assert (await ada.request("typing", {"isTyping": "yes"})).code == "invalid"
    await ada.close()
    await bob.close()

    after = await await_metric(
        srv, lambda s: open_count(s, "ws") == open_count(before, "ws"), "both ws detached"
    )
    d = lambda name, **lbl: delta(before, after, name, **lbl)  # noqa: E731
    # Both closed cleanly (1000). A close that races a frame being written is counted as
    # 1006 (a known server bug, see the report), so the two are counted together here.
    closes = d("lastra_closes_total", code="1000", transport="ws")
    assert closes + d("lastra_closes_total", code="1006", transport="ws") == 2
    assert closes >= 1
    assert d("lastra_messages_in_total", type="chat", transport="ws") == 1
    assert d("lastra_messages_in_total", type="ping", transport="ws") == 1
    assert d("lastra_messages_in_total", type="typing", transport="ws") == 0  # invalid: not in
    assert d("lastra_errors_total", code="unknown_type", transport="ws") == 1
    assert d("lastra_errors_total", code="invalid", transport="ws") == 1
    assert d("lastra_messages_out_total", type="chat", transport="ws") >= 2  # ada's and bob's
    assert d("lastra_messages_out_total", type="ack", transport="ws") >= 1
    assert d("lastra_messages_out_total", type="pong", transport="ws") == 1
    assert d("lastra_messages_out_total", type="ready", transport="ws") == 2
    assert d("lastra_delivery_latency_seconds_count", transport="ws") >= 3
    # nothing of this was SSE
    for name in ("lastra_connections_opened_total", "lastra_delivery_latency_seconds_count"):
        assert d(name, transport="sse") == 0, name
    assert d("lastra_messages_in_total", type="chat", transport="sse") == 0
    assert d("lastra_errors_total", code="unknown_type", transport="sse") == 0


@aio
async def test_sse_traffic_moves_the_sse_counters(srv: Server) -> None:
    before = await ascrape(srv)
    cem = await SseClient.open(srv, await asession(srv.http))
    dee = await SseClient.open(srv, await asession(srv.http))
    opened = await await_metric(
        srv,
        lambda s: open_count(s, "sse") == open_count(before, "sse") + 2,
        "2 sse connections open",
    )
    assert delta(before, opened, "lastra_connections_opened_total", transport="sse") == 2

    assert (await cem.chat("metrics over sse")).ok
    await dee.expect("chat", lambda d: d["text"] == "metrics over sse")
    assert (await cem.request("typing", {"isTyping": True})).ok
    bad = await cem.request("media-state", {})
    assert bad.status == 422 and bad.code == "invalid"
    resp = await cem.post("/api/chat-message", "{not json")
    assert resp.status_code == 400 and resp.json()["code"] == "bad_json"
    await cem.close()
    await dee.close()

    after = await await_metric(
        srv,
        lambda s: open_count(s, "sse") == open_count(before, "sse"),
        "both sse streams detached",
    )
    d = lambda name, **lbl: delta(before, after, name, **lbl)  # noqa: E731
    assert d("lastra_closes_total", code="1000", transport="sse") == 2
    assert d("lastra_messages_in_total", type="chat", transport="sse") == 1
    assert d("lastra_messages_in_total", type="typing", transport="sse") == 1
    assert d("lastra_errors_total", code="invalid", transport="sse") == 1
    assert d("lastra_errors_total", code="bad_json", transport="sse") == 1
    assert d("lastra_messages_out_total", type="chat", transport="sse") >= 2
    assert d("lastra_messages_out_total", type="typing", transport="sse") >= 1
    assert d("lastra_messages_out_total", type="ready", transport="sse") == 2
    assert d("lastra_delivery_latency_seconds_count", transport="sse") >= 3
    for name in ("lastra_connections_opened_total", "lastra_delivery_latency_seconds_count"):
        assert d(name, transport="ws") == 0, name
    assert d("lastra_messages_in_total", type="chat", transport="ws") == 0


@aio
async def test_a_message_crossing_transports_is_counted_out_on_each(srv: Server) -> None:
    ws = await WsClient.open(srv, await asession(srv.http))
    sse = await SseClient.open(srv, await asession(srv.http))
    before = await ascrape(srv)
    assert (await ws.chat("ws to sse")).ok
    await sse.expect("chat", lambda d: d["text"] == "ws to sse")
    assert (await sse.chat("sse to ws")).ok
    await ws.expect("chat", lambda d: d["text"] == "sse to ws")
    after = await ascrape(srv)
    d = lambda name, **lbl: delta(before, after, name, **lbl)  # noqa: E731
    assert d("lastra_messages_in_total", type="chat", transport="ws") == 1
    assert d("lastra_messages_in_total", type="chat", transport="sse") == 1
    assert d("lastra_messages_out_total", type="chat", transport="ws") >= 2
    assert d("lastra_messages_out_total", type="chat", transport="sse") >= 2


@aio
async def test_latency_histogram_is_well_formed(srv: Server) -> None:
    ws = await WsClient.open(srv, await asession(srv.http))
    sse = await SseClient.open(srv, await asession(srv.http))
    assert (await ws.chat("one for the histogram")).ok
    await sse.expect("chat", lambda d: d["text"] == "one for the histogram")
    snap = await ascrape(srv)
    for transport in ("ws", "sse"):
        buckets = sorted(
            (float(dict(lbl)["le"]), v)
            for (name, lbl), v in snap.items()
            if name == "lastra_delivery_latency_seconds_bucket"
            and dict(lbl).get("transport") == transport
        )
        assert buckets, f"no latency buckets for {transport}"
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "cumulative buckets must not decrease"
        total = value(snap, "lastra_delivery_latency_seconds_count", transport=transport)
        assert buckets[-1] == (float("inf"), total)
        assert value(snap, "lastra_delivery_latency_seconds_sum", transport=transport) >= 0


# ------------------------------------------------------------------ resumes


@aio
async def test_resumes_are_counted_by_outcome_and_transport(srv: Server) -> None:
    user = await asession(srv.http)
    first = await WsClient.open(srv, user)
    ack = await first.chat("before the reconnect")
    assert ack.ok
    epoch, seq = first.ready["epoch"], ack.data["seq"]
    await first.close()
    before = await ascrape(srv)

    again = await WsClient.open(srv, user, last_seq=seq - 1, epoch=epoch)
    assert again.ready["recovered"] is True
    stale = await WsClient.open(srv, user, last_seq=seq, epoch="not-the-epoch")
    assert stale.ready["recovered"] is False
    back = await SseClient.open(srv, user, last_event_id=f"{epoch}:{seq - 1}")
    assert back.ready["recovered"] is True
    lost = await SseClient.open(srv, user, last_event_id=f"gone:{seq}")
    assert lost.ready["recovered"] is False
    fresh = await SseClient.open(srv, user)  # no resume point: not a resume at all
    assert fresh.ready["recovered"] is False

    after = await ascrape(srv)
    d = lambda name, **lbl: delta(before, after, name, **lbl)  # noqa: E731
    assert d("lastra_resumes_total", outcome="recovered", transport="ws") == 1
    assert d("lastra_resumes_total", outcome="history", transport="ws") == 1
    assert d("lastra_resumes_total", outcome="recovered", transport="sse") == 1
    assert d("lastra_resumes_total", outcome="history", transport="sse") == 1


# ------------------------------------------------------------------ rollout, sessions


def test_rollout_assignments_and_sessions_are_counted(srv: Server) -> None:
    before = scrape(srv)
    with httpx.Client(timeout=5, trust_env=False) as http:
        resp = http.post(f"{srv.http}/api/session", json={"userName": uniq()})
        assert resp.status_code == 200
        token = resp.json()["token"]
        assert resp.json()["transport"] == "ws"
        for _ in range(2):
            got = http.get(
                f"{srv.http}/api/transport", headers={"Authorization": f"Bearer {token}"}
            )
            assert got.json()["transport"] == "ws"
    after = scrape(srv)
    # reason "rollout: bucket N < 100%" is exported as its first word
    assert (
        delta(before, after, "lastra_rollout_assignments_total", transport="ws", reason="rollout")
        == 3
    )
    assert delta(before, after, "lastra_sessions_created_total") == 1


# ------------------------------------------------------------------ closes by code


@aio
async def test_close_codes_are_counted(srv: Server) -> None:
    """A tab that navigates away (1001) is counted as such, in a quiet room.

    Quiet, because a close that races a frame being written to that client is counted as
    1006 (a server bug, see the report): an observer waits until everybody else has left.
    """
    observer = await WsClient.open(srv, await asession(srv.http))
    me = observer.ready["userId"]
    await observer.wait_until(lambda: room_users(observer) == {me}, "the room emptying", 10)
    before = await ascrape(srv)
    for _ in range(2):
        user = await asession(srv.http)
        going = await WsClient.open(srv, user)
        await observer.wait_until(lambda u=user: u.userId in room_users(observer), "a join")
        await going.expect("chat", lambda d: d.get("kind") == "system")
        await going.ws.close(code=1001)  # the tab navigates away
        await observer.wait_until(lambda u=user: u.userId not in room_users(observer), "a leave")
    after = await ascrape(srv)
    assert delta(before, after, "lastra_closes_total", code="1001", transport="ws") == 2
    assert delta(before, after, "lastra_closes_total", code="1006", transport="ws") == 0


@aio
async def test_frame_too_large_close_is_counted_as_1009(srv: Server) -> None:
    before = await ascrape(srv)
    client = await WsClient.open(srv, await asession(srv.http))
    await client.send_raw(json.dumps({"type": "ping", "data": {"t": "x" * 70_000}}))
    assert (await client.wait_closed())[0] == 1009
    after = await await_metric(
        srv, lambda s: open_count(s, "ws") == open_count(before, "ws"), "the connection detached"
    )
    too_big = delta(before, after, "lastra_closes_total", code="1009", transport="ws")
    raced = delta(before, after, "lastra_closes_total", code="1006", transport="ws")
    assert too_big + raced == 1  # 1006 when the close races a write (see the report)


@aio
async def test_websocket_auth_failures_are_visible_in_metrics(srv: Server) -> None:
    before = await ascrape(srv)
    client = await WsClient.connect(srv.ws)
    await client.auth("forged.token.value", settle=False)
    assert (await client.wait_closed())[0] == 4401
    sse = await SseClient.connect(srv.http, None, headers={"Authorization": "Bearer forged"})
    assert sse.status == 401
    after = await ascrape(srv)
    assert (
        delta(before, after, "lastra_errors_total", code="not_authenticated", transport="sse") == 1
    )
    seen_ws = delta(
        before, after, "lastra_errors_total", code="not_authenticated", transport="ws"
    ) + delta(before, after, "lastra_closes_total", code="4401", transport="ws")
    assert seen_ws >= 1, "a 4401 on WebSocket left no trace in /metrics"


# ------------------------------------------------------------------ bots


@aio
async def test_bot_requests_are_counted(srv: Server) -> None:
    client = await WsClient.open(srv, await asession(srv.http))
    bot = client.bots["bots"][0]["name"]
    before = await ascrape(srv)
    reply = await client.request("ai-request", {"prompt": "count me", "bot": bot})
    assert reply.ok, reply
    await client.expect("ai-stream", lambda d: d.get("done") is True, timeout=10)
    after = await ascrape(srv)
    assert delta(before, after, "lastra_bot_requests_total", bot=bot) == 1


# ------------------------------------------------------------------ the /admin numbers


@aio
async def test_admin_stats_are_refused_while_no_admin_token_is_set(srv: Server) -> None:
    """This server has no ``ADMIN_TOKEN``: the stats stay closed, even to an empty bearer."""
    async with async_http(srv.http) as http:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x"}):
            resp = await http.get("/api/admin/stats", headers=headers)
            assert resp.status_code == 401, resp.text
            assert resp.json()["code"] == "not_authenticated"
