"""Token buckets, one per user and class of message.

Per user, not per connection: opening more tabs must not buy more throughput.
Signals get their own generous bucket because ICE gathering sends candidates in
bursts that would starve chat if they shared one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bucket", "Rate"]


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float


class Bucket:
    """A token bucket; ``take(now)`` is False when the caller is over its rate."""

    __slots__ = ("_rate", "_tokens", "_updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self._rate = rate
        self._tokens = rate.burst
        self._updated = now

    def full(self, now: float) -> bool:
        """Refilled to its burst: indistinguishable from a fresh bucket."""
        elapsed = max(0.0, now - self._updated)
        return self._tokens + elapsed * self._rate.per_second >= self._rate.burst

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self._rate.burst, self._tokens + elapsed * self._rate.per_second)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False
