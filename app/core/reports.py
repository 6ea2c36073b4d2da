"""Clients' reports on how the rollout goes for them (PROTOCOL §4, ``call-outcome`` and
``delivery-report``), and the guard's comparison of the two cohorts.

Reports are measurements, not chat: they are validated and bounded here like every
other message (a report that fails any check is refused whole, so a malformed one
changes no figure), rate-limited per user by the core, and turned into a
:class:`~app.core.outputs.Tally` for the I/O layer's metrics. Nothing here reads a
clock or touches a socket.

Bounds: a delivery report carries at most ``MAX_SAMPLES`` latencies of each kind and
``MAX_RESUMES`` resume outcomes; every duration is 0..``MAX_MS`` milliseconds and every
count 0..``MAX_COUNT``. A client that observes more keeps the newest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from .errors import ClientError

__all__ = [
    "MAX_MS",
    "MAX_RESUMES",
    "MAX_SAMPLES",
    "CallOutcome",
    "CohortFigures",
    "DeliveryReport",
    "GuardThresholds",
    "ResumeOutcome",
    "cohort_of",
    "compare",
    "pair_of",
    "parse_call_outcome",
    "parse_delivery_report",
]

MAX_MS: Final = 600_000  # ten minutes: anything longer is a broken clock, not a latency
MAX_COUNT: Final = 100_000
MAX_SAMPLES: Final = 64
MAX_RESUMES: Final = 16
ROUTES: Final = frozenset({"direct", "relayed", "unknown"})
Cohort = Literal["ws", "sse"]


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One RTCPeerConnection's outcome, as its own side saw it."""

    type: ClassVar[str] = "call-outcome"
    peer: str
    stream: str
    connected: bool
    connect_ms: int | None
    route: str
    ice_restarts: int
    remote_transport: str | None = None  # the client's view, used once the peer is gone
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ResumeOutcome:
    """One reconnect that asked to resume: replayed without a gap, or not."""

    recovered: bool
    replayed: int
    duplicates: int
    gaps: int

    @property
    def lossless(self) -> bool:
        return self.recovered and self.gaps == 0


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Latencies a client observed since its last report, and its resume outcomes."""

    type: ClassVar[str] = "delivery-report"
    send_to_ack_ms: tuple[int, ...]
    commit_to_receive_ms: tuple[int, ...]
    resumes: tuple[ResumeOutcome, ...]
    ref: str | None = None


def cohort_of(transport: str) -> Cohort:
    """The cohort a transport label belongs to (``sse-legacy`` is an SSE client too)."""
    return "ws" if transport == "ws" else "sse"


def pair_of(mine: str, theirs: str) -> str:
    """``ws-ws``, ``ws-sse`` or ``sse-sse``: the call's two transports, WebSocket first."""
    a, b = sorted((cohort_of(mine), cohort_of(theirs)), key=lambda t: t != "ws")
    return f"{a}-{b}"


def _int(data: dict[str, Any], name: str, ref: str | None, top: int) -> int:
    value = data.get(name)
    # bool is an int subclass: never accept True as a number.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ClientError("invalid", f"data.{name} must be an integer in 0..{top}", ref)
    return value


def _ms_list(data: dict[str, Any], name: str, ref: str | None) -> tuple[int, ...]:
    value = data.get(name, [])
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ClientError("invalid", f"data.{name} must be a list of milliseconds", ref)
    if len(value) > MAX_SAMPLES:
        raise ClientError("too_large", f"data.{name} has over {MAX_SAMPLES} samples", ref)
    out = []
    for ms in value:
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms <= MAX_MS:
            raise ClientError("invalid", f"data.{name} holds numbers in 0..{MAX_MS}", ref)
        out.append(round(ms))
    return tuple(out)


def parse_call_outcome(data: dict[str, Any], ref: str | None) -> CallOutcome:
    peer = data.get("peerId")
    if not isinstance(peer, str) or not 0 < len(peer) <= 64:
        raise ClientError("invalid", "data.peerId must be the remote peerId", ref)
    stream = data.get("stream", "camera")
    if stream not in ("camera", "screen"):
        raise ClientError("invalid", "data.stream must be camera or screen", ref)
    outcome = data.get("outcome")
    if outcome not in ("connected", "failed"):
        raise ClientError("invalid", "data.outcome must be connected or failed", ref)
    connected = outcome == "connected"
    connect_ms = _int(data, "connectMs", ref, MAX_MS) if connected else None
    route = data.get("route", "unknown")
    if not isinstance(route, str) or route not in ROUTES:
        raise ClientError("invalid", "data.route must be direct, relayed or unknown", ref)
    restarts = _int({"iceRestarts": data.get("iceRestarts", 0)}, "iceRestarts", ref, 1000)
    remote = data.get("remoteTransport")
    if remote is not None and remote not in ("ws", "sse"):
        raise ClientError("invalid", "data.remoteTransport must be ws or sse", ref)
    return CallOutcome(peer, str(stream), connected, connect_ms, route, restarts, remote, ref)


def parse_delivery_report(data: dict[str, Any], ref: str | None) -> DeliveryReport:
    acks = _ms_list(data, "sendToAckMs", ref)
    commits = _ms_list(data, "commitToReceiveMs", ref)
    raw = data.get("resumes", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ClientError("invalid", "data.resumes must be a list", ref)
    if len(raw) > MAX_RESUMES:
        raise ClientError("too_large", f"data.resumes has over {MAX_RESUMES} entries", ref)
    resumes = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("recovered"), bool):
            raise ClientError("invalid", "each resume needs recovered: true|false", ref)
        resumes.append(
            ResumeOutcome(
                item["recovered"],
                _int({"v": item.get("replayed", 0)}, "v", ref, MAX_COUNT),
                _int({"v": item.get("duplicates", 0)}, "v", ref, MAX_COUNT),
                _int({"v": item.get("gaps", 0)}, "v", ref, MAX_COUNT),
            )
        )
    if not acks and not commits and not resumes:
        raise ClientError("invalid", "an empty report: send it when there is something", ref)
    return DeliveryReport(acks, commits, tuple(resumes), ref)


# ------------------------------------------------------------------ the guard's rule


@dataclass(frozen=True, slots=True)
class GuardThresholds:
    """How much worse the WebSocket cohort may be than the SSE cohort before the guard trips.

    Rates are differences (WS rate minus SSE rate, 0..1); the delivery bound is WS p99
    minus SSE p99 in milliseconds. A figure is judged only once the WS cohort has
    ``min_samples`` events of that kind in the window: one failure out of one is noise.
    """

    abnormal_closes: float = 0.05
    failed_resumes: float = 0.02
    call_failures: float = 0.10
    delivery_p99_ms: float = 500.0
    min_samples: int = 20


@dataclass(frozen=True, slots=True)
class CohortFigures:
    """One cohort's figures over the window: (bad, total) pairs and a delivery p99."""

    closes: tuple[int, int] = (0, 0)
    resumes: tuple[int, int] = (0, 0)
    calls: tuple[int, int] = (0, 0)
    delivery_p99_ms: float | None = None
    delivery_samples: int = 0


def _rate(pair: tuple[int, int]) -> float:
    bad, total = pair
    return bad / total if total else 0.0


def compare(ws: CohortFigures, sse: CohortFigures, limits: GuardThresholds) -> list[str]:
    """The figures on which WebSocket is worse than SSE beyond ``limits``; empty: healthy.

    Each entry reads like ``abnormal closes 40.0% (8/20) vs 0.0% (0/12) > +5.0%``, so the
    trip's log line carries the numbers that tripped it.
    """
    out: list[str] = []
    for name, key, limit in (
        ("abnormal closes", "closes", limits.abnormal_closes),
        ("failed resumes", "resumes", limits.failed_resumes),
        ("call failures", "calls", limits.call_failures),
    ):
        w: tuple[int, int] = getattr(ws, key)
        s: tuple[int, int] = getattr(sse, key)
        if w[1] >= limits.min_samples and _rate(w) - _rate(s) > limit:
            out.append(
                f"{name} {_rate(w):.1%} ({w[0]}/{w[1]}) vs {_rate(s):.1%} ({s[0]}/{s[1]})"
                f" > +{limit:.1%}"
            )
    if ws.delivery_p99_ms is not None and ws.delivery_samples >= limits.min_samples:
        base = sse.delivery_p99_ms or 0.0
        if ws.delivery_p99_ms - base > limits.delivery_p99_ms:
            out.append(
                f"delivery p99 {ws.delivery_p99_ms:.0f} ms vs {base:.0f} ms"
                f" > +{limits.delivery_p99_ms:.0f} ms"
            )
    return out
