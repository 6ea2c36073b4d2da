"""Clients' rollout reports (``call-outcome``, ``delivery-report``) on a real server, and the
rollout guard tripping on a failing WebSocket cohort, on one process and on two over Redis.

The clients are real sockets (tests/clients.py); the WebSocket cohort is made to fail by
the fault hook that ``LASTRA_TEST_FAULTS`` mounts (every WebSocket closed with 1011), the
way a broken proxy would.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
from support.clients import SseClient, WsClient, aio, asession, async_http
from support.cluster import cluster
from support.server import Server

ADMIN = "admin-token-for-tests"
GUARD = {
    "ROLLOUT_GUARD": "true",
    "ROLLOUT_GUARD_MIN_SAMPLES": "3",
    "TEST_FAULTS": "true",
    "ADMIN_TOKEN": ADMIN,
}
FIGURES = re.compile(
    r"^lastra_(call_|client_|cohort_|rollout_guard_tripped)\S*(?:\{[^}]*\})? [0-9.e+-]+$", re.M
)


async def metric_lines(server: Server) -> set[str]:
    """The rollout figures on ``/metrics`` (every sample line of them)."""
    async with async_http() as http:
        text = (await http.get(f"{server.http}/metrics")).text
    return {m.group(0) for m in FIGURES.finditer(text)}


def value(lines: set[str], name: str, **labels: str) -> float:
    """The sample of ``name`` with exactly ``labels`` (0 when absent)."""
    for line in lines:
        key, _, number = line.rpartition(" ")
        metric, _, rest = key.partition("{")
        if metric == name and dict(re.findall(r'(\w+)="([^"]*)"', rest)) == labels:
            return float(number)
    return 0.0


async def wait_for(predicate: Any, timeout: float = 8.0, what: str = "") -> Any:
    """Until ``await predicate()`` is truthy (the guard checks once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.1)


async def transport_of(server: Server, token: str) -> dict[str, Any]:
    async with async_http() as http:
        resp = await http.get(
            f"{server.http}/api/transport", headers={"Authorization": f"Bearer {token}"}
        )
    body: dict[str, Any] = resp.json()
    return body


async def admin(server: Server, method: str, path: str) -> httpx.Response:
    async with async_http() as http:
        return await http.request(
            method, f"{server.http}{path}", headers={"Authorization": f"Bearer {ADMIN}"}
        )


# ------------------------------------------------------------------ reports


@aio
async def test_call_outcomes_are_counted_per_transport_pair(make_server: Any) -> None:
    srv = make_server()
    ada, bea, cy = [await asession(srv.http, n) for n in ("Ada", "Bea", "Cy")]
    a = await WsClient.open(srv, ada)
    b = await SseClient.open(srv, bea)
    c = await WsClient.open(srv, cy)
    ok = {"stream": "camera", "outcome": "connected", "connectMs": 420, "route": "direct"}
    assert (await a.request("call-outcome", {**ok, "peerId": b.peer_id, "iceRestarts": 1})).ok
    reply = await b.request("call-outcome", {**ok, "peerId": a.peer_id, "route": "relayed"})
    assert reply.ok, reply
    assert (await a.request("call-outcome", {**ok, "peerId": c.peer_id})).ok
    failed = {"peerId": a.peer_id, "outcome": "failed", "iceRestarts": 2}
    assert (await c.request("call-outcome", failed)).ok
    # the remote is gone: the client's own view of its transport is used
    gone = {"peerId": "p_gone", "outcome": "failed", "remoteTransport": "sse"}
    assert (await c.request("call-outcome", gone)).ok
    assert (await c.request("call-outcome", {**gone, "remoteTransport": None})).code == "not_found"

    lines = await metric_lines(srv)
    assert value(lines, "lastra_call_outcomes_total", pair="ws-sse", outcome="connected") == 2
    assert value(lines, "lastra_call_outcomes_total", pair="ws-sse", outcome="failed") == 1
    assert value(lines, "lastra_call_outcomes_total", pair="ws-ws", outcome="connected") == 1
    assert value(lines, "lastra_call_outcomes_total", pair="ws-ws", outcome="failed") == 1
    assert value(lines, "lastra_call_outcomes_total", pair="sse-sse", outcome="connected") == 0
    assert value(lines, "lastra_call_routes_total", pair="ws-sse", route="relayed") == 1
    assert value(lines, "lastra_call_ice_restarts_total", pair="ws-ws") == 2
    assert value(lines, "lastra_call_connect_seconds_count", pair="ws-sse") == 2
    assert value(lines, "lastra_call_connect_seconds_bucket", pair="ws-sse", le="0.5") == 2


@aio
async def test_delivery_reports_are_aggregated_per_transport(make_server: Any) -> None:
    srv = make_server()
    ws = await WsClient.open(srv, await asession(srv.http))
    sse = await SseClient.open(srv, await asession(srv.http))
    report = {
        "sendToAckMs": [3, 7, 40],
        "commitToReceiveMs": [2, 2000],
        "resumes": [
            {"recovered": True, "replayed": 12, "duplicates": 1, "gaps": 0},
            {"recovered": False, "replayed": 0},
        ],
    }
    assert (await ws.request("delivery-report", report)).ok
    assert (await sse.request("delivery-report", {"sendToAckMs": [30, 31.6]})).ok
    lines = await metric_lines(srv)
    assert value(lines, "lastra_client_send_ack_seconds_count", transport="ws") == 3
    assert value(lines, "lastra_client_send_ack_seconds_bucket", transport="ws", le="0.01") == 2
    assert value(lines, "lastra_client_send_ack_seconds_count", transport="sse") == 2
    assert value(lines, "lastra_client_commit_receive_seconds_count", transport="ws") == 2
    assert value(lines, "lastra_client_resumes_total", transport="ws", outcome="recovered") == 1
    assert value(lines, "lastra_client_resumes_total", transport="ws", outcome="lost") == 1
    assert value(lines, "lastra_client_replayed_events_total", transport="ws") == 12
    assert value(lines, "lastra_client_duplicates_suppressed_total", transport="ws") == 1
    assert value(lines, "lastra_client_reports_total", type="delivery-report", transport="sse") == 1


MALFORMED: list[tuple[str, Any, str]] = [
    ("delivery-report", {}, "invalid"),
    ("delivery-report", {"sendToAckMs": "fast"}, "invalid"),
    ("delivery-report", {"sendToAckMs": [True]}, "invalid"),
    ("delivery-report", {"sendToAckMs": [-1]}, "invalid"),
    ("delivery-report", {"sendToAckMs": [600_001]}, "invalid"),
    ("delivery-report", {"sendToAckMs": list(range(65))}, "too_large"),
    ("delivery-report", {"resumes": [{"recovered": 1}]}, "invalid"),
    ("delivery-report", {"resumes": [{"recovered": True}] * 17}, "too_large"),
    (
        "delivery-report",
        {"sendToAckMs": [5], "resumes": [{"recovered": True, "gaps": -2}]},
        "invalid",
    ),
    ("call-outcome", {"outcome": "connected"}, "invalid"),
    ("call-outcome", {"peerId": "p_x", "outcome": "great"}, "invalid"),
    ("call-outcome", {"peerId": "p_x", "outcome": "connected"}, "invalid"),  # no connectMs
    ("call-outcome", {"peerId": "p_x", "outcome": "failed", "route": "carrier pigeon"}, "invalid"),
    ("call-outcome", {"peerId": "p_x", "outcome": "failed", "iceRestarts": 1.5}, "invalid"),
    ("call-outcome", {"peerId": "x" * 65, "outcome": "failed"}, "invalid"),
]


@aio
async def test_malformed_and_flooding_reports_get_the_usual_errors_and_change_no_figure(
    make_server: Any,
) -> None:
    srv = make_server(RATE_REPORT="0.01", RATE_REPORT_BURST="3")
    ws = await WsClient.open(srv, await asession(srv.http))
    sse = await SseClient.open(srv, await asession(srv.http))
    before = await metric_lines(srv)
    for client in (ws, sse):
        for kind, data, code in MALFORMED:
            reply = await client.request(kind, data)
            assert reply.code == code, (client.transport, kind, data, reply)
            if client is sse:
                assert reply.status == {"invalid": 422, "too_large": 413}[code]
    assert await metric_lines(srv) == before, "a refused report changed a figure"

    # a flood: the burst passes, the rest is refused, and only the burst is counted
    one = {"sendToAckMs": [5]}
    replies = [await ws.request("delivery-report", one) for _ in range(6)]
    assert [r.ok for r in replies] == [True] * 3 + [False] * 3
    assert {r.code for r in replies[3:]} == {"rate_limited"}
    sse_replies = [await sse.request("delivery-report", one) for _ in range(5)]
    assert [r.status for r in sse_replies] == [200] * 3 + [429] * 2
    lines = await metric_lines(srv)
    assert value(lines, "lastra_client_send_ack_seconds_count", transport="ws") == 3
    assert value(lines, "lastra_client_send_ack_seconds_count", transport="sse") == 3
    # reports are "other" chat traffic's neighbours, not its competitors: chat still flows
    assert (await ws.chat("still here")).ok


# ------------------------------------------------------------------ the guard


async def fail_ws_cohort(server: Server, clients: list[WsClient]) -> None:
    """Close every WebSocket of ``server`` with 1011 through the test-only fault hook."""
    resp = await admin(server, "POST", "/api/test/fault")
    assert resp.status_code == 200, resp.text
    assert resp.json()["closed"] >= len(clients)
    for client in clients:
        code, _ = await client.wait_closed()
        assert code == 1011


async def guard_tripped(server: Server) -> bool:
    return value(await metric_lines(server), "lastra_rollout_guard_tripped") == 1.0


async def guard_clear(server: Server) -> bool:
    return value(await metric_lines(server), "lastra_rollout_guard_tripped") == 0.0


async def trip_and_clear(trip_on: Server, others: list[Server]) -> None:
    """WebSocket clients on ``trip_on`` fail; every server then assigns SSE until cleared."""
    users = [await asession(trip_on.http) for _ in range(3)]
    watcher = users[0]
    assert (await transport_of(trip_on, watcher.token))["transport"] == "ws"
    clients = [await WsClient.open(trip_on, u) for u in users]
    sse_user = await asession(trip_on.http)
    await SseClient.open(trip_on, sse_user)  # the SSE cohort is healthy
    await fail_ws_cohort(trip_on, clients)

    for srv in [trip_on, *others]:
        await wait_for(lambda s=srv: guard_tripped(s), what=f"guard tripped on {srv.port}")
        assert await transport_of(srv, watcher.token) == {"transport": "sse", "reason": "guard"}
        # a reconnecting WebSocket is sent to SSE too (4403: the client falls back)
        again = await WsClient.connect(srv.ws, watcher)
        await again.auth(watcher.token, settle=False)
        assert (await again.wait_closed())[0] == 4403
        # and SSE serves the user, resuming where it was
        stream = await SseClient.open(srv, watcher)
        assert stream.seen("ready")[0]["data"]["transport"] == "sse"
        stats = (await admin(srv, "GET", "/api/admin/stats?minutes=10")).json()
        assert stats["guard"]["tripped"] is True
        assert any("abnormal closes" in r for r in stats["guard"]["reasons"])
        assert [r["metric"] for r in stats["scorecard"]] == [
            "features work",
            "resources per connection",
            "message latency (p99)",
            "call success",
            "no loss at reconnect",
        ]
        assert {r["status"] for r in stats["scorecard"]} <= {"ok", "warn", "unknown"}
        resources = stats["scorecard"][1]
        if resources["status"] != "unknown":  # bench/results present: measured per transport
            assert resources["ws"]["rssKbPerConn"] > 0 and resources["sse"]["rssKbPerConn"] > 0
        assert stats["process"]["rssKb"] > 0
    assert "rollout guard tripped" in trip_on.log()
    assert "abnormal closes 100.0% (3/3)" in trip_on.log()

    # the operator clears it (on any process): WebSocket is assigned again everywhere
    clear_on = others[-1] if others else trip_on
    assert (await admin(clear_on, "POST", "/api/admin/guard/clear")).status_code == 200
    for srv in [trip_on, *others]:
        await wait_for(lambda s=srv: guard_clear(s), what=f"guard cleared on {srv.port}")
        assert (await transport_of(srv, watcher.token))["transport"] == "ws"
    # the figures that tripped it do not trip it again
    await asyncio.sleep(1.5)  # more than one guard check: nothing may happen
    assert await guard_clear(trip_on)


@aio
async def test_the_guard_trips_on_a_failing_websocket_cohort_and_an_operator_clears_it(
    make_server: Any,
) -> None:
    srv = make_server(**GUARD)
    await trip_and_clear(srv, [])


def test_the_guard_holds_for_every_process_over_redis(tmp_path: Path, redis_url: str) -> None:
    with cluster(tmp_path, redis_url, 2, **GUARD) as (a, b):

        @aio
        async def run() -> None:
            await trip_and_clear(a, [b])

        run()


@aio
async def test_the_guard_needs_the_admin_token_and_stays_off_by_default(make_server: Any) -> None:
    srv = make_server(ADMIN_TOKEN=ADMIN)
    async with async_http() as http:
        assert (await http.post(f"{srv.http}/api/admin/guard/clear")).status_code == 401
        # no fault hook outside tests
        resp = await http.post(
            f"{srv.http}/api/test/fault", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        assert resp.status_code in (404, 405)
    lines = await metric_lines(srv)
    assert value(lines, "lastra_rollout_guard_tripped") == 0


def test_metric_names_are_stable() -> None:
    """The names docs/operations.md and migrations_notes.md tell operators to graph."""
    from app.metrics import Metrics

    text = Metrics().render().decode()
    for name in (
        "lastra_call_outcomes_total",
        "lastra_call_connect_seconds",
        "lastra_client_send_ack_seconds",
        "lastra_client_commit_receive_seconds",
        "lastra_client_resumes_total",
        "lastra_cohort_closes_total",
    ):
        assert name in text
