"""The transport flag: which transport a user is on now (PROTOCOL §7).

Rules, first match wins:

1. SSE disabled            → ws   (reason ``sse-disabled``)
1b. the guard is tripped   → sse  (``guard``: the WebSocket cohort did worse than SSE;
                                  see :func:`app.core.reports.compare`)
2. user in ``sse_users``   → sse  (``sse-user``; the deny list wins over the allow list,
                                  so an operator can always pull one user back)
3. user in ``ws_users``    → ws   (``ws-user``)
4. mode ``sse`` / ``ws``   → that (``mode``)
5. mode ``rollout``        → ws when ``bucket(user) < percent`` (``rollout``)

``bucket`` is SHA-256 of the userId mod 100: stable across processes and restarts,
unlike Python's salted ``hash()``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

__all__ = ["Assignment", "Rollout", "Transport", "bucket"]

Transport = Literal["ws", "sse"]


def bucket(user_id: str) -> int:
    """The user's stable bucket in 0..99."""
    digest = hashlib.sha256(user_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True, slots=True)
class Assignment:
    transport: Transport
    reason: str


@dataclass(frozen=True, slots=True)
class Rollout:
    mode: Literal["sse", "ws", "rollout"] = "ws"
    percent: int = 0
    ws_users: frozenset[str] = frozenset()
    sse_users: frozenset[str] = frozenset()
    sse_enabled: bool = True

    def assign(self, user_id: str, *, guard_tripped: bool = False) -> Assignment:
        if not self.sse_enabled:
            return Assignment("ws", "sse-disabled")
        if guard_tripped:
            return Assignment("sse", "guard")
        if user_id in self.sse_users:
            return Assignment("sse", "sse-user")
        if user_id in self.ws_users:
            return Assignment("ws", "ws-user")
        if self.mode != "rollout":
            return Assignment(self.mode, "mode")
        b = bucket(user_id)
        if b < self.percent:
            return Assignment("ws", f"rollout: bucket {b} < {self.percent}%")
        return Assignment("sse", f"rollout: bucket {b} >= {self.percent}%")
