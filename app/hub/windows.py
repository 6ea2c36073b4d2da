"""A large room's ``presence-diff``, cut to what each connection holds (protocol §8).

Above ``snapshot_max`` users a client holds the list (join order,
:mod:`app.core.joinorder`) only up to some user (its snapshot's first page and the
pages it fetched since, in order; ``Presence.held``). Sorted by list key, what a connection
should see is a prefix of the upserts and of the removes, plus its own entry
and the counts: connections that hold the same prefix share one encoded frame,
and a connection whose prefix is empty gets the counts only when they changed.
A crowd of N joining thus costs every member a few small frames, not O(N) bytes.

Small rooms and clients that hold the whole list get the diff unchanged.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from app.core.presence import Presence
from app.wire import Frame

from .connection import Connection

__all__ = ["WindowedDiff"]


class WindowedDiff:
    """Fans one large-room diff out, one frame per distinct window."""

    __slots__ = ("_counts", "_frames", "_own", "_rem", "_rem_keys", "_tail", "_up", "_up_ids")

    def __init__(self, data: dict[str, Any], key_of: Callable[[str], str | None]) -> None:
        # in list order: an upsert of a user unknown here sorts past every tab's part
        # (only whole-list tabs get it); an unknown removal sorts first (everyone gets it)
        ups = sorted(
            ((key_of(str(u.get("userId"))) or "\uffff", u) for u in data.get("upsert") or []),
            key=lambda pair: pair[0],
        )
        self._up = [orjson.dumps(u) for _, u in ups]
        self._up_ids = [k for k, _ in ups]
        self._own = {str(u.get("userId")): i for i, (_, u) in enumerate(ups)}
        rem = sorted((key_of(r) or "", r) for r in data.get("remove") or [])
        self._rem_keys = [k for k, _ in rem]
        self._rem: list[str] = [r for _, r in rem]
        self._counts = (int(data["total"]), int(data["online"]))
        self._tail = b'],"total":%d,"online":%d}}' % self._counts
        self._frames: dict[tuple[int, int, int], Frame] = {}

    @property
    def counts(self) -> tuple[int, int]:
        return self._counts

    def send(self, conns: Iterable[Connection], presence: Presence, counts_changed: bool) -> None:
        held, n_up, n_rem = presence.held, len(self._up), len(self._rem)
        for conn in conns:
            upto = held.get(conn.peer_id)
            if upto is None:
                key = (n_up, n_rem, -1)
            else:
                own = self._own.get(conn.identity.user_id, -1)
                ku = bisect_right(self._up_ids, upto)
                key = (ku, bisect_right(self._rem_keys, upto), own if own >= ku else -1)
                if key == (0, 0, -1) and not counts_changed:
                    continue
            frame = self._frames.get(key)
            if frame is None:
                frame = self._frames[key] = self._frame(*key)
            conn.push(frame)

    def _frame(self, ku: int, kr: int, own: int) -> Frame:
        ups = self._up[:ku] + ([self._up[own]] if own >= 0 else [])
        body = b"".join(
            (
                b'{"type":"presence-diff","data":{"upsert":[',
                b",".join(ups),
                b'],"remove":[',
                orjson.dumps(self._rem[:kr])[1:-1],
                self._tail,
            )
        )
        return Frame("presence-diff", body, None, None)
