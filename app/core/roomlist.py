"""Presence as events: the batched diff, a large room's pages and resyncs (protocol §8).

Kept beside :mod:`.chat` so the room's main dispatch stays readable; every
function here is pure over the :class:`~.presence.Presence` table it is given.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from .errors import ClientError
from .outputs import Broadcast, Event, Output, Reply, Send
from .presence import Flush, Presence

__all__ = ["diff_outputs", "page_reply", "resync"]


def diff_outputs(presence: Presence, flush: Flush) -> list[Output]:
    """The ``presence-diff`` of one flush, then whole lists for peers that need them again."""
    out: list[Output] = []
    if flush.upsert or flush.remove:
        diff: dict[str, Any] = {"upsert": flush.upsert, "remove": flush.remove}
        if flush.counts is not None:  # a large room (§8): what a partial list cannot count
            diff["total"], diff["online"] = flush.counts
        out.append(Broadcast(Event("presence-diff", diff)))
    return out + resync(presence, flush.resync)


def resync(presence: Presence, peer_ids: tuple[str, ...] | None = None) -> list[Output]:
    """The whole list again for peers that held part of it, the room being small now.

    ``None``: every peer still entered as holding part (after another process's
    diff shrank the room), if the room is small.
    """
    if peer_ids is None:
        if len(presence.users) > presence.snapshot_max:
            return []
        peer_ids, presence.held = tuple(presence.held), {}
    if not peer_ids:
        return []
    event = Event("presence", {"users": presence.snapshot()})
    return [Send(p, event) for p in peer_ids]


def page_reply(
    presence: Presence, user_id: str, peer_id: str | None, cursor: str | None, ref: str | None
) -> list[Output]:
    """A ``presence-page``; the tab that asked now holds the list up to its end, if contiguous."""
    page = presence.page(cursor)
    with suppress(ClientError):  # (a POST naming no tab, with several open: just answered)
        held = presence.peer_of(user_id, peer_id).peer_id
        presence.paged(held, cursor, page["cursor"])
    return [Reply(Event("presence-page", page | ({} if ref is None else {"ref": ref})))]
