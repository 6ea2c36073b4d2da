"""The migration's five success metrics, WebSocket beside SSE, each with a plain verdict.

The plan's list: all features working, reduced server resource usage, lower message
latency, an improved WebRTC connection success rate, zero message loss during
reconnection. Each row holds the two cohorts' figures over the window and a verdict:
``ok`` (WebSocket is at least as good), ``warn`` (it is worse: hold or roll back) or
``unknown`` (too few events in the window to say). The admin page prints them as they
are; ``migrations_notes.md`` says how to read them.
"""

from __future__ import annotations

from typing import Any

from app.cost import BenchCost

__all__ = ["scorecard"]

MIN_EVENTS = 5  # fewer than this in a cohort: say "not enough data" rather than guess


def _row(name: str, ws: Any, sse: Any, status: str, verdict: str) -> dict[str, Any]:
    return {"metric": name, "ws": ws, "sse": sse, "status": status, "verdict": verdict}


def _pct(bad: int, total: int) -> float | None:
    return round(100 * bad / total, 2) if total else None


def _fmt(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:g}{unit}"


def scorecard(
    errors: dict[str, dict[str, float]],
    cohorts: dict[str, Any],
    connections: dict[str, int],
    bench: BenchCost | None,
    live: dict[str, float],
) -> list[dict[str, Any]]:
    """Five rows; ``errors`` is :meth:`Metrics.window`'s ``byTransport``, ``cohorts`` is
    :meth:`Cohorts.summary`'s ``cohorts``."""
    rows = []
    # 1. all features working: error events per message received
    e_ws, e_sse = errors.get("ws", {}), errors.get("sse", {})
    ws_err = _pct(int(e_ws.get("err", 0)), int(e_ws.get("in", 0)))
    sse_err = _pct(int(e_sse.get("err", 0)), int(e_sse.get("in", 0)))
    if e_ws.get("in", 0) < MIN_EVENTS:
        rows.append(
            _row("features work", ws_err, sse_err, "unknown", "Too little WebSocket traffic yet.")
        )
    elif (ws_err or 0) <= max(1.0, 1.5 * (sse_err or 0)):
        rows.append(
            _row(
                "features work",
                ws_err,
                sse_err,
                "ok",
                f"WebSocket errors {_fmt(ws_err, '%')} of messages, "
                f"SSE {_fmt(sse_err, '%')}: fine.",
            )
        )
    else:
        rows.append(
            _row(
                "features work",
                ws_err,
                sse_err,
                "warn",
                f"WebSocket errors {_fmt(ws_err, '%')} of messages against SSE "
                f"{_fmt(sse_err, '%')}: look at lastra_errors by code.",
            )
        )

    # 2. server resources: per open connection, from the benchmark, and live
    if bench is None:
        rows.append(
            _row(
                "resources per connection",
                None,
                None,
                "unknown",
                "No benchmark results in bench/results: run make bench to measure.",
            )
        )
    else:
        ws_kb, sse_kb = bench.rss_kb_per_conn["ws"], bench.rss_kb_per_conn["sse"]
        ws_cpu, sse_cpu = bench.cpu_ms_per_100k["ws"], bench.cpu_ms_per_100k["sse"]
        ws_cost = {"rssKbPerConn": ws_kb, "cpuMsPer100k": ws_cpu, "open": connections.get("ws", 0)}
        sse_cost = {
            "rssKbPerConn": sse_kb,
            "cpuMsPer100k": sse_cpu,
            "open": connections.get("sse", 0),
        }
        ok = ws_kb <= sse_kb and ws_cpu <= sse_cpu
        text = (
            f"Measured ({bench.source}, N={bench.n}): WebSocket {ws_kb:g} KB per connection "
            f"and {ws_cpu:g} ms CPU per 100k deliveries, SSE {sse_kb:g} KB and {sse_cpu:g} ms. "
            "Now: this process "
            f"{live.get('rssKb', 0):g} KB RSS, {live.get('cpuPercent', 0):g}% CPU."
        )
        rows.append(
            _row("resources per connection", ws_cost, sse_cost, "ok" if ok else "warn", text)
        )

    # 3. message latency as clients see it (p99 of send→ack and ts→receipt)
    ws, sse = cohorts["ws"], cohorts["sse"]
    w_lat = {"ackP99Ms": ws["ackP99Ms"], "receiveP99Ms": ws["receiveP99Ms"]}
    s_lat = {"ackP99Ms": sse["ackP99Ms"], "receiveP99Ms": sse["receiveP99Ms"]}
    samples = ws["ackSamples"] + ws["receiveSamples"]
    if samples < MIN_EVENTS:
        rows.append(
            _row(
                "message latency (p99)",
                w_lat,
                s_lat,
                "unknown",
                "Too few latency reports from WebSocket clients yet.",
            )
        )
    else:
        worse = [k for k in w_lat if (w_lat[k] or 0) > (s_lat[k] or w_lat[k] or 0)]
        status = "warn" if worse else "ok"
        text = (
            f"send→ack p99 {_fmt(ws['ackP99Ms'], ' ms')} vs {_fmt(sse['ackP99Ms'], ' ms')}, "
            f"receive p99 {_fmt(ws['receiveP99Ms'], ' ms')} vs {_fmt(sse['receiveP99Ms'], ' ms')}: "
            + ("WebSocket is slower." if worse else "WebSocket is as fast or faster.")
        )
        rows.append(_row("message latency (p99)", w_lat, s_lat, status, text))

    # 4. WebRTC connection success, by the reporter's transport
    w_ok = _pct(ws["calls"] - ws["callFailures"], ws["calls"])
    s_ok = _pct(sse["calls"] - sse["callFailures"], sse["calls"])
    if ws["calls"] < MIN_EVENTS:
        rows.append(
            _row("call success", w_ok, s_ok, "unknown", "Too few calls from WebSocket clients yet.")
        )
    elif (w_ok or 0) + 2 >= (s_ok if s_ok is not None else 0):
        rows.append(
            _row(
                "call success",
                w_ok,
                s_ok,
                "ok",
                f"{_fmt(w_ok, '%')} of WebSocket clients' calls connected, "
                f"{_fmt(s_ok, '%')} of SSE clients'.",
            )
        )
    else:
        rows.append(
            _row(
                "call success",
                w_ok,
                s_ok,
                "warn",
                f"Only {_fmt(w_ok, '%')} of WebSocket clients' calls connected "
                f"against {_fmt(s_ok, '%')}.",
            )
        )

    # 5. zero message loss at reconnect
    w_loss = {
        "resumes": ws["resumes"],
        "lost": ws["resumesLost"],
        "gaps": ws["gaps"],
        "duplicatesSuppressed": ws["duplicatesSuppressed"],
    }
    s_loss = {
        "resumes": sse["resumes"],
        "lost": sse["resumesLost"],
        "gaps": sse["gaps"],
        "duplicatesSuppressed": sse["duplicatesSuppressed"],
    }
    if ws["resumes"] == 0:
        rows.append(
            _row(
                "no loss at reconnect",
                w_loss,
                s_loss,
                "unknown",
                "No WebSocket client has resumed in this window.",
            )
        )
    elif ws["resumesLost"] == 0 and ws["gaps"] == 0:
        rows.append(
            _row(
                "no loss at reconnect",
                w_loss,
                s_loss,
                "ok",
                f"All {ws['resumes']} WebSocket resumes replayed without a gap.",
            )
        )
    else:
        rows.append(
            _row(
                "no loss at reconnect",
                w_loss,
                s_loss,
                "warn",
                f"{ws['resumesLost']} of {ws['resumes']} WebSocket resumes could not replay, "
                f"{ws['gaps']} gaps seen.",
            )
        )
    return rows
