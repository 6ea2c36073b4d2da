"""Operator instruments: Prometheus metrics and the rolling numbers behind ``/admin``.

Hot-path counts (every message in and out) are plain dict increments collected
at scrape time by a custom collector, so a broadcast to 5,000 clients does not
pay for 5,000 labelled-counter lookups. Everything lives in one per-app
registry: tests run several apps side by side.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from app.cohorts import Cohorts
from app.core import CloseCode
from app.core.ratelimit import Bucket, Rate

__all__ = ["CLOSE_CODES", "Metrics", "close_label"]

WINDOW_BUCKET = 10.0  # seconds per bucket of the rolling window
WINDOW_BUCKETS = 360  # an hour: the admin page's longest window


#: close codes with their own ``lastra_closes`` series; any other (a client may pick
#: any of 3000-4999) is counted as ``other``, so clients cannot grow the label set
CLOSE_CODES = frozenset(int(code) for code in CloseCode)
#: fresh ``/metrics`` renders: 10 a second, bursts of 30; a flood beyond gets the last one
RENDERS = Rate(10.0, 30.0)


def close_label(code: int) -> str:
    return str(code) if code in CLOSE_CODES else "other"


class _Counts(Collector):
    """Exports the hot-path dict counters as Prometheus counters."""

    def __init__(self, owner: Metrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        m_in = CounterMetricFamily(
            "lastra_messages_in", "Client messages received", labels=["type", "transport"]
        )
        for (kind, transport), n in sorted(self.owner.messages_in.items()):
            m_in.add_metric([kind, transport], n)
        yield m_in
        m_out = CounterMetricFamily(
            "lastra_messages_out", "Server events delivered", labels=["type", "transport"]
        )
        for (kind, transport), n in sorted(self.owner.messages_out.items()):
            m_out.add_metric([kind, transport], n)
        yield m_out


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._rendered: bytes | None = None
        self._renders = Bucket(RENDERS, time.monotonic())
        r = self.registry
        self.messages_in: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.messages_out: defaultdict[tuple[str, str], int] = defaultdict(int)
        r.register(_Counts(self))
        # the rollout's per-cohort success figures (client reports, closes): app/cohorts.py
        self.cohorts = Cohorts()
        r.register(self.cohorts)
        self.open = Gauge("lastra_connections_open", "Open connections", ["transport"], registry=r)
        self.opened = Counter(
            "lastra_connections_opened", "Connections opened", ["transport"], registry=r
        )
        self.closes = Counter(
            "lastra_closes", "Connections closed, by close code", ["code", "transport"], registry=r
        )
        self.errors = Counter(
            "lastra_errors", "Error events sent, by code", ["code", "transport"], registry=r
        )
        self.resumes = Counter(
            "lastra_resumes",
            "Reconnects that asked to resume",
            ["outcome", "transport"],
            registry=r,
        )
        self.overflows = Counter(
            "lastra_outbound_overflow", "Slow consumers closed (4409)", ["transport"], registry=r
        )
        self.latency = Histogram(
            "lastra_delivery_latency_seconds",
            "From event creation to written on the connection",
            ["transport"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.bot_requests = Counter(
            "lastra_bot_requests", "Bot replies started", ["bot"], registry=r
        )
        self.bot_failures = Counter(
            "lastra_bot_failures", "Bot replies that failed", ["bot"], registry=r
        )
        self.assignments = Counter(
            "lastra_rollout_assignments",
            "Transport decisions handed to clients",
            ["transport", "reason"],
            registry=r,
        )
        self.sessions = Counter("lastra_sessions_created", "Sessions issued", registry=r)
        self.refused = Counter(
            "lastra_connections_refused", "Connections refused", ["reason"], registry=r
        )
        # rolling window for /admin: bucket start → {(transport, "in"|"err"): n}
        self._window: deque[tuple[float, defaultdict[tuple[str, str], int]]] = deque(
            maxlen=WINDOW_BUCKETS
        )

    def render(self) -> bytes:
        """The exposition text: fresh within :data:`RENDERS`, else the last render.

        A render walks every series (hundreds of them); an unauthenticated flood of
        scrapes would otherwise take the event loop from the chat. A scraper (even
        several) polling every few seconds always gets a fresh render.
        """
        if self._rendered is None or self._renders.take(time.monotonic()):
            self._rendered = generate_latest(self.registry)
        return self._rendered

    # ------------------------------------------------------------ recording

    def _bucket(self) -> defaultdict[tuple[str, str], int]:
        now = time.time()
        start = now - now % WINDOW_BUCKET
        if not self._window or self._window[-1][0] != start:
            self._window.append((start, defaultdict(int)))
        return self._window[-1][1]

    def received(self, kind: str, transport: str) -> None:
        self.messages_in[(kind, transport)] += 1
        self._bucket()[(transport, "in")] += 1

    def error(self, code: str, transport: str) -> None:
        self.errors.labels(code, transport).inc()
        self._bucket()[(transport, "err")] += 1

    def connected(self, transport: str) -> None:
        self.opened.labels(transport).inc()
        self.open.labels(transport).inc()
        self._bucket()[(transport, "conn")] += 1

    def disconnected(self, transport: str, code: int) -> None:
        self.open.labels(transport).dec()
        self.closes.labels(close_label(code), transport).inc()
        if code == CloseCode.SLOW:
            self.overflows.labels(transport).inc()
        self.cohorts.closed(transport, code)

    def window(self, minutes: int = 5) -> dict[str, Any]:
        """Per-transport messages, errors and error rate over the last ``minutes``."""
        since = time.time() - minutes * 60
        out: dict[str, dict[str, float]] = {}
        for start, counts in self._window:
            if start < since:
                continue
            for (transport, what), n in counts.items():
                out.setdefault(transport, {"in": 0, "err": 0, "conn": 0})[what] += n
        for row in out.values():
            row["errorRate"] = row["err"] / row["in"] if row["in"] else 0.0
        return {"minutes": minutes, "byTransport": out}
