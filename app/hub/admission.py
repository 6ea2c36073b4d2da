"""The connection caps: in total, per user and per client address.

A place is reserved at :meth:`Admission.admit`, before the connection is
registered, so that concurrent opens cannot all pass the caps before any of them
counts; :meth:`Admission.release` gives it back exactly once.
"""

from __future__ import annotations

from .connection import Connection

__all__ = ["Admission"]


class Admission:
    """Counts the places taken under each cap."""

    def __init__(self, total: int, per_user: int, per_address: int, queue_bytes: int) -> None:
        self.max_connections = total
        self.max_user_connections = per_user
        self.max_address_connections = per_address
        self.max_queue_bytes = queue_bytes
        self._per_user: dict[str, int] = {}
        self._per_address: dict[str, int] = {}
        self.admitted = 0

    def admit(self, conn: Connection, closing: bool) -> str | None:
        """Reserve a place for ``conn``, or say why it must be refused.

        ``conn.address`` (set by the transport) counts against the per-address cap:
        one address cannot hold every place by minting many users.
        """
        user_id, address = conn.identity.user_id, conn.address
        if closing:
            return "server-restart"
        if self.admitted >= self.max_connections:
            return "server-full"
        if self._per_user.get(user_id, 0) >= self.max_user_connections:
            return "too-many-connections"
        if address and self._per_address.get(address, 0) >= self.max_address_connections:
            return "address-full"
        conn.admitted = True
        conn.max_bytes = self.max_queue_bytes
        self.admitted += 1
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        if address:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return None

    def release(self, conn: Connection) -> None:
        """Give back the place :meth:`admit` reserved (idempotent)."""
        if not conn.admitted:
            return
        conn.admitted = False
        self.admitted -= 1
        _decrement(self._per_user, conn.identity.user_id)
        if conn.address:
            _decrement(self._per_address, conn.address)


def _decrement(counts: dict[str, int], key: str) -> None:
    """One place fewer under ``key``; no entry is kept at zero (bounded memory)."""
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
