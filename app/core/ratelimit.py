"""Token buckets, one per user and class of message.

Per user, not per connection: opening more tabs must not buy more throughput.
Signals get their own generous bucket because ICE gathering sends candidates in
bursts that would starve chat if they shared one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Bucket", "Budgets", "Rate"]


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


class Budgets:
    """One bucket per (user, kind of message); kinds without their own rate share ``other``."""

    #: beyond this many buckets, full ones are dropped (bounded memory against user-id churn)
    MAX_BUCKETS = 100_000

    def __init__(self, rates: dict[str, Rate], other: Rate) -> None:
        self._rates = rates
        self._other = other
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def take(self, user_id: str, kind: str, now: float) -> bool:
        """One ``kind`` message from ``user_id``'s budget; False when over its rate."""
        key = (user_id, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:
                # a full bucket is the same as a new one, so dropping those is free
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            rate = self._rates.get(kind, self._other)
            bucket = self._buckets[key] = Bucket(rate, now)
        return bucket.take(now)
