"""The rollout's success figures per transport cohort: what clients report, and closes.

Kept apart from :mod:`app.metrics` (the hot-path counters) on purpose: these figures
change a few times a second at most (reports are rate-limited, closes are rare), so
plain dicts suffice. They feed three readers:

- ``/metrics`` (this module is a Prometheus collector of running totals);
- ``/admin``, which shows the WebSocket and SSE cohorts side by side over a chosen
  window (:meth:`Cohorts.summary`);
- the rollout guard (:mod:`app.guard`), which compares the cohorts over its window
  (:meth:`Cohorts.figures`).

The window is a ring of ``BUCKET``-second buckets covering ``BUCKETS`` of them (an hour).
Latencies are kept as counts per fixed bucket, so a percentile is the upper bound of the
bucket it falls in: coarse, bounded, and the same on every process.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.core.reports import CallOutcome, CohortFigures, DeliveryReport, cohort_of

__all__ = ["ABNORMAL_CLOSES", "PAIRS", "Cohorts"]

BUCKET: Final = 10.0
BUCKETS: Final = 360
#: Latency buckets in milliseconds (upper bounds); the last one holds everything up to MAX_MS.
MS_BUCKETS: Final = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 600_000)
PAIRS: Final = ("ws-ws", "ws-sse", "sse-sse")
COHORTS: Final = ("ws", "sse")
#: Close codes that mean the server side of a connection failed: abnormal closure (a proxy
#: or the network cut it without a close frame), server error, try later, bad gateway,
#: heartbeat timeout, slow consumer. 1000/1001/1005, a planned restart (1012), refusals
#: and a client's own codes (the web client's 4000: it went offline) are not: an SSE stream
#: that a client drops looks like a normal end, so counting those for WebSocket only would
#: make the cohorts unequal.
ABNORMAL_CLOSES: Final = frozenset({1006, 1011, 1013, 1014, 4408, 4409})

Key = tuple[str, ...]


def _bucket_of(ms: int) -> int:
    for i, top in enumerate(MS_BUCKETS):
        if ms <= top:
            return i
    return len(MS_BUCKETS) - 1


def _percentile(counts: list[int], q: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    need = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= need:
            return float(MS_BUCKETS[i])
    return float(MS_BUCKETS[-1])  # pragma: no cover


class Cohorts(Collector):
    """Running totals (for ``/metrics``) and a rolling window (for ``/admin`` and the guard)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.totals: defaultdict[Key, int] = defaultdict(int)
        self._window: deque[tuple[float, defaultdict[Key, int]]] = deque(maxlen=BUCKETS)

    # ------------------------------------------------------------ recording

    def _add(self, key: Key, n: int = 1) -> None:
        self.totals[key] += n
        now = self._clock()
        start = now - now % BUCKET
        if not self._window or self._window[-1][0] != start:
            self._window.append((start, defaultdict(int)))
        self._window[-1][1][key] += n

    def closed(self, transport: str, code: int) -> None:
        verdict = "abnormal" if code in ABNORMAL_CLOSES else "normal"
        self._add(("close", cohort_of(transport), verdict))

    def call(self, report: CallOutcome, cohort: str, pair: str) -> None:
        outcome = "connected" if report.connected else "failed"
        self._add(("call", pair, outcome))
        self._add(("call-by", cohort, outcome))
        self._add(("route", pair, report.route))
        if report.ice_restarts:
            self._add(("ice-restarts", pair), report.ice_restarts)
        if report.connect_ms is not None:
            self._add(("call-ms", pair, str(_bucket_of(report.connect_ms))))
            self._add(("call-ms-sum", pair), report.connect_ms)

    def delivery(self, report: DeliveryReport, cohort: str) -> None:
        for kind, samples in (
            ("ack", report.send_to_ack_ms),
            ("commit", report.commit_to_receive_ms),
        ):
            for ms in samples:
                self._add((f"{kind}-ms", cohort, str(_bucket_of(ms))))
            if samples:
                self._add((f"{kind}-ms-sum", cohort), sum(samples))
        for r in report.resumes:
            self._add(("resume", cohort, "recovered" if r.lossless else "lost"))
            for name, n in (
                ("replayed", r.replayed),
                ("duplicates", r.duplicates),
                ("gaps", r.gaps),
            ):
                if n:
                    self._add((name, cohort), n)

    def tally(self, report: CallOutcome | DeliveryReport, cohort: str, pair: str | None) -> None:
        """One validated report (the core's ``Tally``)."""
        self._add(("reports", report.type, cohort))
        if isinstance(report, CallOutcome):
            self.call(report, cohort, pair or f"{cohort}-{cohort}")
        else:
            self.delivery(report, cohort)

    # ------------------------------------------------------------ reading

    def counts(self, seconds: float, since: float = 0.0) -> defaultdict[Key, int]:
        """Every key's sum over the last ``seconds``, in buckets that began after ``since``.

        (A bucket that began before ``since`` is left out whole: after the guard is
        cleared, the comparison restarts with the next bucket, never with the old events.)
        """
        start = self._clock() - seconds
        out: defaultdict[Key, int] = defaultdict(int)
        for bucket_start, counts in self._window:
            if bucket_start + BUCKET <= start or bucket_start <= since:
                continue
            for key, n in counts.items():
                out[key] += n
        return out

    @staticmethod
    def _latency(counts: dict[Key, int], kinds: tuple[str, ...], cohort: str) -> list[int]:
        return [
            sum(counts.get((f"{k}-ms", cohort, str(i)), 0) for k in kinds)
            for i in range(len(MS_BUCKETS))
        ]

    def figures(self, seconds: float, since: float = 0.0) -> dict[str, CohortFigures]:
        """Each cohort's guard figures over the window."""
        c = self.counts(seconds, since)
        out = {}
        for cohort in COHORTS:
            latency = self._latency(c, ("ack", "commit"), cohort)
            out[cohort] = CohortFigures(
                closes=(c[("close", cohort, "abnormal")], _sum(c, "close", cohort)),
                resumes=(c[("resume", cohort, "lost")], _sum(c, "resume", cohort)),
                calls=(c[("call-by", cohort, "failed")], _sum(c, "call-by", cohort)),
                delivery_p99_ms=_percentile(latency, 0.99),
                delivery_samples=sum(latency),
            )
        return out

    def summary(self, seconds: float, since: float = 0.0) -> dict[str, Any]:
        """The admin page's numbers: per cohort and per call pair, over the window."""
        c = self.counts(seconds, since)
        cohorts: dict[str, Any] = {}
        for cohort in COHORTS:
            ack = self._latency(c, ("ack",), cohort)
            commit = self._latency(c, ("commit",), cohort)
            cohorts[cohort] = {
                "closes": _sum(c, "close", cohort),
                "abnormalCloses": c[("close", cohort, "abnormal")],
                "calls": _sum(c, "call-by", cohort),
                "callFailures": c[("call-by", cohort, "failed")],
                "resumes": _sum(c, "resume", cohort),
                "resumesLost": c[("resume", cohort, "lost")],
                "replayed": c[("replayed", cohort)],
                "duplicatesSuppressed": c[("duplicates", cohort)],
                "gaps": c[("gaps", cohort)],
                "ackP50Ms": _percentile(ack, 0.5),
                "ackP99Ms": _percentile(ack, 0.99),
                "ackSamples": sum(ack),
                "receiveP50Ms": _percentile(commit, 0.5),
                "receiveP99Ms": _percentile(commit, 0.99),
                "receiveSamples": sum(commit),
            }
        pairs: dict[str, Any] = {}
        for pair in PAIRS:
            ok, failed = c[("call", pair, "connected")], c[("call", pair, "failed")]
            timed = [c.get(("call-ms", pair, str(i)), 0) for i in range(len(MS_BUCKETS))]
            pairs[pair] = {
                "connected": ok,
                "failed": failed,
                "relayed": c[("route", pair, "relayed")],
                "iceRestarts": c[("ice-restarts", pair)],
                "connectP50Ms": _percentile(timed, 0.5),
            }
        return {"cohorts": cohorts, "pairs": pairs}

    # ------------------------------------------------------------ Prometheus

    def collect(self) -> Iterator[Metric]:
        t = self.totals
        calls = CounterMetricFamily(
            "lastra_call_outcomes",
            "Peer connections reported by clients, by transport pair and outcome",
            labels=["pair", "outcome"],
        )
        routes = CounterMetricFamily(
            "lastra_call_routes",
            "Selected candidate pair of reported calls: direct, relayed (TURN) or unknown",
            labels=["pair", "route"],
        )
        restarts = CounterMetricFamily(
            "lastra_call_ice_restarts", "ICE restarts in reported calls", labels=["pair"]
        )
        for pair in PAIRS:
            for outcome in ("connected", "failed"):
                calls.add_metric([pair, outcome], t.get(("call", pair, outcome), 0))
            for route in ("direct", "relayed", "unknown"):
                routes.add_metric([pair, route], t.get(("route", pair, route), 0))
            restarts.add_metric([pair], t.get(("ice-restarts", pair), 0))
        yield calls
        yield routes
        yield restarts
        yield self._histogram(
            "lastra_call_connect_seconds",
            "Reported time from a peer connection's creation to connected",
            "pair",
            PAIRS,
            "call-ms",
        )
        for kind, name, doc in (
            ("ack", "lastra_client_send_ack_seconds", "Client-observed send to ack"),
            ("commit", "lastra_client_commit_receive_seconds", "Client-observed ts to receipt"),
        ):
            yield self._histogram(name, doc, "transport", COHORTS, f"{kind}-ms")
        yield self._grid(
            "lastra_client_resumes",
            "Client-reported resumes: recovered (replayed, no gap) or lost",
            ("transport", "outcome"),
            "resume",
            COHORTS,
            ("recovered", "lost"),
        )
        for key, name, doc in (
            ("replayed", "lastra_client_replayed_events", "Events replayed at client resumes"),
            ("duplicates", "lastra_client_duplicates_suppressed", "Duplicates clients dropped"),
            ("gaps", "lastra_client_seq_gaps", "Seq gaps clients saw (lost events)"),
        ):
            family = CounterMetricFamily(name, doc, labels=["transport"])
            for cohort in COHORTS:
                family.add_metric([cohort], t.get((key, cohort), 0))
            yield family
        yield self._grid(
            "lastra_cohort_closes",
            "Connection ends per cohort: abnormal (failures) or normal",
            ("transport", "kind"),
            "close",
            COHORTS,
            ("abnormal", "normal"),
        )
        yield self._grid(
            "lastra_client_reports",
            "Accepted client reports",
            ("type", "transport"),
            "reports",
            ("call-outcome", "delivery-report"),
            COHORTS,
        )

    def _grid(
        self,
        name: str,
        doc: str,
        labels: tuple[str, str],
        key: str,
        rows: tuple[str, ...],
        columns: tuple[str, ...],
    ) -> CounterMetricFamily:
        """A counter with two labels, every combination present (zeros included)."""
        family = CounterMetricFamily(name, doc, labels=list(labels))
        for row in rows:
            for column in columns:
                family.add_metric([row, column], self.totals.get((key, row, column), 0))
        return family

    def _histogram(
        self, name: str, doc: str, label: str, values: tuple[str, ...], prefix: str
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=[label])
        for value in values:
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for i, top in enumerate(MS_BUCKETS):
                cumulative += self.totals.get((prefix, value, str(i)), 0)
                buckets.append((str(top / 1000), cumulative))
            buckets.append(("+Inf", cumulative))
            total_ms = self.totals.get((f"{prefix}-sum", value), 0)
            family.add_metric([value], buckets, total_ms / 1000)
        return family


def _sum(counts: dict[Key, int], kind: str, cohort: str) -> int:
    return sum(n for key, n in counts.items() if key[0] == kind and key[1] == cohort)
