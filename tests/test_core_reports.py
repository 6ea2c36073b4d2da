"""Rollout reports in the sans-I/O core: pairs, validation, rate limits, the guard's rule."""

from __future__ import annotations

from typing import Any

import pytest
from support.corepair import CorePair

from app.cohorts import Cohorts
from app.core import ChatConfig, Rollout, Tally
from app.core.ratelimit import Rate
from app.core.reports import (
    CallOutcome,
    CohortFigures,
    DeliveryReport,
    GuardThresholds,
    compare,
    pair_of,
)


def test_pairs_put_websocket_first_and_count_legacy_sse_as_sse() -> None:
    assert pair_of("ws", "ws") == "ws-ws"
    assert pair_of("sse", "ws") == pair_of("ws", "sse") == "ws-sse"
    assert pair_of("sse-legacy", "sse") == "sse-sse"


def test_a_call_outcome_becomes_a_tally_for_both_ends_transports() -> None:
    pair = CorePair(ChatConfig(presence_batch=0))
    ada = pair.connect("Ada", transport="ws")
    bea = pair.connect("Bea", transport="sse")
    data = {"peerId": ada.peer_id, "outcome": "connected", "connectMs": 800, "route": "relayed"}
    assert bea.post("call-outcome", data) == []  # no ref: nothing to answer
    assert [e.type for e in bea.post("call-outcome", data, ref="r1")] == ["ack"]
    tally = pair.tallies[0]
    assert isinstance(tally.report, CallOutcome)
    assert (tally.cohort, tally.pair, tally.report.route) == ("sse", "ws-sse", "relayed")


def test_reports_have_their_own_rate_limit_and_refusals_make_no_tally() -> None:
    pair = CorePair(ChatConfig(presence_batch=0, rate_report=Rate(0.001, 2)))
    ada = pair.connect("Ada")
    report = {"type": "delivery-report", "data": {"sendToAckMs": [4]}, "ref": "r"}
    codes = [ada.send(report)[0].data.get("code") for _ in range(4)]
    assert codes == [None, None, "rate_limited", "rate_limited"]
    assert len(pair.tallies) == 2
    bad = {"type": "delivery-report", "data": {"sendToAckMs": [1e9]}, "ref": "r"}
    assert ada.send(bad)[0].data["code"] == "invalid"
    assert len(pair.tallies) == 2
    # chat has its own budget: reports never starve it
    assert ada.send({"type": "chat", "data": {"text": "hi"}, "ref": "c"})[0].type == "ack"


def test_the_guard_overrules_the_flag_except_when_sse_is_off() -> None:
    rollout = Rollout(mode="ws", ws_users=frozenset({"u1"}))
    assert rollout.assign("u1", guard_tripped=True).reason == "guard"
    assert rollout.assign("u2", guard_tripped=True).transport == "sse"
    off = Rollout(mode="ws", sse_enabled=False)
    assert off.assign("u1", guard_tripped=True).transport == "ws"


LIMITS = GuardThresholds(min_samples=10)


@pytest.mark.parametrize(
    ("ws", "sse", "tripped_on"),
    [
        (CohortFigures(closes=(1, 10)), CohortFigures(closes=(0, 10)), ["abnormal closes"]),
        (CohortFigures(closes=(1, 9)), CohortFigures(), []),  # too few to judge
        (CohortFigures(closes=(2, 40)), CohortFigures(closes=(1, 40)), []),  # within +5%
        (CohortFigures(resumes=(1, 10)), CohortFigures(), ["failed resumes"]),
        (CohortFigures(calls=(3, 10)), CohortFigures(calls=(1, 10)), ["call failures"]),
        (
            CohortFigures(delivery_p99_ms=1000, delivery_samples=10),
            CohortFigures(delivery_p99_ms=250, delivery_samples=99),
            ["delivery p99"],
        ),
        (CohortFigures(delivery_p99_ms=500, delivery_samples=50), CohortFigures(), []),
    ],
)
def test_the_guard_rule(ws: CohortFigures, sse: CohortFigures, tripped_on: list[str]) -> None:
    reasons = compare(ws, sse, LIMITS)
    assert [r.split(" ")[0] + " " + r.split(" ")[1] for r in reasons] == tripped_on


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_cohort_window_figures_and_clearing() -> None:
    clock = Clock()
    cohorts = Cohorts(clock)
    for code in (1011, 1006, 1000):
        cohorts.closed("ws", code)
    cohorts.closed("sse", 1000)
    report = DeliveryReport((5, 30, 2000), (), ())
    cohorts.tally(report, "ws", None)
    figures = cohorts.figures(300)
    assert figures["ws"].closes == (2, 3)
    assert figures["sse"].closes == (0, 1)
    assert figures["ws"].delivery_p99_ms == 2500  # the bucket's upper bound
    assert figures["ws"].delivery_samples == 3
    # a clear restarts the comparison with the next bucket
    assert cohorts.figures(300, since=clock.now).get("ws") == CohortFigures()
    clock.now += 400  # out of the window
    assert cohorts.figures(300)["ws"].closes == (0, 0)
    summary: dict[str, Any] = cohorts.summary(3600)
    assert summary["cohorts"]["ws"]["ackP99Ms"] == 2500


def test_tally_is_exported() -> None:
    assert Tally.__module__ == "app.core.outputs"
