"""A large room's list order: users in the order they joined this process's table.

Pages and the part of the list a tab holds (protocol §8) are ranges of this order.
Join order, not userId order, because a newcomer then always sorts last: what a tab
holds never grows as the room fills, so its diffs stay O(its page) however many join
(in userId order every join lands inside some tab's range, and a crowd of N cost the
room about N²/2 entries of diffs). A key is a zero-padded counter, so keys compare as
strings; a cursor is the key of a page's last user, opaque to clients and valid on
the process that gave it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["JoinOrder"]

GONE_MAX = 10_000  # removed users' keys kept for the diffs that announce the removal


class JoinOrder:
    __slots__ = ("_at", "_gone", "_gone_before", "_key", "_next", "keys")

    def __init__(self) -> None:
        self.keys: list[str] = []  # sorted: appended in join order
        self._key: dict[str, str] = {}  # user_id → key
        self._at: dict[str, str] = {}  # key → user_id
        self._gone: dict[str, str] = {}  # removed since the last flush: user_id → key
        self._gone_before: dict[str, str] = {}  # removed before it (its diff may be in flight)
        self._next = 0

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, user_id: str) -> None:
        key = f"{self._next:012d}"
        self._next += 1
        self._key[user_id] = key
        self._at[key] = user_id
        self.keys.append(key)

    def remove(self, user_id: str) -> None:
        key = self._key.pop(user_id, None)
        if key is None:
            return
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i]
        del self._at[key]
        if len(self._gone) >= GONE_MAX:
            self._gone.clear()
        self._gone[user_id] = key

    def flushed(self) -> None:
        """A diff was built: removals before it are no longer needed after the next."""
        self._gone_before, self._gone = self._gone, {}

    def key_of(self, user_id: str) -> str | None:
        """The user's key; a recently removed user's old one; None if unknown here."""
        return self._key.get(user_id) or self._gone.get(user_id) or self._gone_before.get(user_id)

    def user_at(self, key: str) -> str:
        return self._at[key]

    def after(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        """Up to ``limit`` user ids after ``cursor``, and the cursor of the next page."""
        start = 0 if cursor is None else bisect_right(self.keys, cursor)
        keys = self.keys[start : start + limit]
        more = start + len(keys) < len(self.keys)
        return [self._at[k] for k in keys], (keys[-1] if more and keys else None)
