"""The rollout guard (``LASTRA_ROLLOUT_GUARD``): stop assigning WebSocket when it does worse.

Every second the guard compares the WebSocket cohort with the SSE cohort over its
window (:func:`app.core.reports.compare`: abnormal closes, failed resumes, call
failures, delivery p99). When WebSocket is worse beyond the thresholds it trips: it
logs one line with the numbers, saves its state as a shared flag through the broker
(Redis: every process reads it within a second; memory: this process), and from then
on :meth:`Services.assign` answers ``sse`` (reason ``guard``) to every new and
reconnecting user. Connections already open are left alone: they move at their next
reconnect, and a resume loses nothing.

It stays tripped until an operator clears it (``POST /api/admin/guard/clear``). Clearing
restarts the comparison from that moment, so the figures that tripped it do not trip
it again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from app.backends.base import Broker
from app.cohorts import Cohorts
from app.core.reports import GuardThresholds, compare

__all__ = ["Guard"]

log = logging.getLogger("lastra.guard")

FLAG = "rollout-guard"
EVERY = 1.0


class Guard(Collector):
    """The guard's state, its evaluation loop and its ``/metrics`` lines."""

    def __init__(
        self,
        cohorts: Cohorts,
        broker: Broker,
        *,
        enabled: bool,
        window: float,
        thresholds: GuardThresholds,
    ) -> None:
        self.cohorts = cohorts
        self.broker = broker
        self.enabled = enabled
        self.window = window
        self.thresholds = thresholds
        self.state: dict[str, Any] = {"tripped": False, "clearedAt": 0.0}
        self.trips = 0  # trips this process made
        self._task: asyncio.Task[None] | None = None

    @property
    def tripped(self) -> bool:
        return bool(self.state.get("tripped"))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lastra-rollout-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a Redis blip must not end the guard
                log.warning("rollout guard check failed", exc_info=True)
            await asyncio.sleep(EVERY)

    async def check(self) -> None:
        """Adopt the shared state, then trip if the cohorts say so."""
        shared = await self.broker.load_flag(FLAG)
        if shared is not None:
            self.state = shared
        if not self.enabled or self.tripped:
            return
        since = float(self.state.get("clearedAt") or 0.0)
        figures = self.cohorts.figures(self.window, since)
        reasons = compare(figures["ws"], figures["sse"], self.thresholds)
        if reasons:
            await self.trip(reasons, {k: asdict(v) for k, v in figures.items()})

    async def trip(self, reasons: list[str], figures: dict[str, Any]) -> None:
        self.state = {
            "tripped": True,
            "at": time.time(),
            "reasons": reasons,
            "figures": figures,
            "windowSeconds": self.window,
            "clearedAt": self.state.get("clearedAt", 0.0),
        }
        self.trips += 1
        await self.broker.save_flag(FLAG, self.state)
        log.warning(
            "rollout guard tripped: new and reconnecting users get SSE; %s", "; ".join(reasons)
        )

    async def clear(self, by: str) -> None:
        was = self.state
        self.state = {"tripped": False, "clearedAt": time.time(), "clearedBy": by}
        await self.broker.save_flag(FLAG, self.state)
        if was.get("tripped"):
            log.warning("rollout guard cleared by %s: WebSocket is assigned again", by)

    def view(self) -> dict[str, Any]:
        """For ``/api/admin/stats``."""
        limits = asdict(self.thresholds)
        return {"enabled": self.enabled, "windowSeconds": self.window, "thresholds": limits}

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "lastra_rollout_guard_tripped",
            "1 while the rollout guard assigns SSE to everyone (cleared by an operator)",
        )
        state.add_metric([], 1.0 if self.tripped else 0.0)
        yield state
        enabled = GaugeMetricFamily("lastra_rollout_guard_enabled", "LASTRA_ROLLOUT_GUARD")
        enabled.add_metric([], 1.0 if self.enabled else 0.0)
        yield enabled
        trips = CounterMetricFamily("lastra_rollout_guard_trips", "Trips made by this process")
        trips.add_metric([], self.trips)
        yield trips
