"""What an open connection of each transport costs: measured by the benchmark, and sampled.

One process serves both transports, so its own memory and CPU cannot be split between
them at run time. The split comes from the benchmark (``bench/results/*/results.json``:
server RSS per idle connection and server CPU per 100k deliveries, measured for each
transport alone on the same machine); the live sample (this process's RSS and CPU use
now) is shown beside it, so an operator can see whether the real mix still fits the
measured figures. Without benchmark results (an image built without ``bench/``) the
per-transport figures say so instead of guessing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["BenchCost", "Sampler", "load_bench_cost"]

RESULTS: Final = Path(__file__).resolve().parent.parent / "bench" / "results"
TARGETS: Final = {"ws": "ours-ws", "sse": "ours-sse"}


@dataclass(frozen=True, slots=True)
class BenchCost:
    """Per-transport figures from one benchmark run, at its largest N."""

    source: str
    n: int
    rss_kb_per_conn: dict[str, float]
    cpu_ms_per_100k: dict[str, float]


def load_bench_cost(root: Path = RESULTS) -> BenchCost | None:
    """The full run's figures if there is one, else the quick run's; None without either."""
    for mode in ("full", "quick"):
        path = root / mode / "results.json"
        try:
            cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        best: dict[str, dict[str, Any]] = {}
        for case in cases:
            for transport, target in TARGETS.items():
                if case.get("target") != target or case.get("rss_per_conn_kb") is None:
                    continue
                if transport not in best or case.get("n", 0) > best[transport].get("n", 0):
                    best[transport] = case
        if len(best) != len(TARGETS):
            continue
        rss = {t: float(c["rss_per_conn_kb"]) for t, c in best.items()}
        cpu = {
            t: round(float((c.get("knee") or {}).get("cpu_s_per_100k") or 0.0) * 1000, 1)
            for t, c in best.items()
        }
        n = min(int(c.get("n", 0)) for c in best.values())
        return BenchCost(f"bench/results/{mode}", n, rss, cpu)
    return None


class Sampler:
    """This process's RSS and CPU use, sampled on demand (at most once a second)."""

    def __init__(self) -> None:
        self._last = (time.monotonic(), time.process_time())
        self._cpu_pct = 0.0

    def sample(self) -> dict[str, float]:
        now, cpu = time.monotonic(), time.process_time()
        wall = now - self._last[0]
        if wall >= 1.0:
            self._cpu_pct = round(100 * (cpu - self._last[1]) / wall, 1)
            self._last = (now, cpu)
        return {"rssKb": round(_rss_bytes() / 1024), "cpuPercent": self._cpu_pct}


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # not Linux: the peak is the best we have

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
