"""Bytes of presence a crowd of N joins costs, with and without the partial snapshot.

In-process (the core and the hub's greeting builder, no sockets), so it runs in a
second and needs no quiet machine::

    python -m bench.presence_bytes --n 1000 [--max 200]

N users join one after another, a presence batch every ``--per-batch`` joins.
Printed per setting: the bytes of every newcomer's ``presence`` snapshot (what the
connect path writes), of the ``presence-page`` replies if every client pages the
whole list at once, and of the ``presence-diff`` frames all members receive (whole
for clients that hold the whole list, cut to the first page for those that keep it).
"""

from __future__ import annotations

import argparse
from typing import Any, cast

import orjson

from app.backends.base import Store
from app.core import Broadcast, Chat, ChatConfig, Identity, Peer, Reply
from app.core.messages import PresencePage
from app.core.ratelimit import Rate
from app.hub.greeting import Greeting
from app.hub.windows import WindowedDiff
from app.wire import Frame, encode_event


class _Member:
    """What :class:`WindowedDiff` needs of a connection: who, and where the bytes go."""

    def __init__(self, peer_id: str, identity: Identity) -> None:
        self.peer_id, self.identity, self.nbytes = peer_id, identity, 0

    def push(self, frame: Frame) -> None:
        self.nbytes += len(frame.json)


def crowd(n: int, snapshot_max: int, per_batch: int, page_all: bool) -> tuple[int, int, int]:
    """(snapshot, paging, diff bytes) for ``n`` users joining one by one.

    ``page_all``: every client pages to the end at once (and then holds the whole
    list, so every diff is whole); else each keeps its first page (§8 windows).
    """
    now = 0.0
    unlimited = Rate(1e9, 1e9)
    config = ChatConfig(presence_snapshot_max=snapshot_max, rate_other=unlimited)
    chat = Chat(config, clock=lambda: now)
    greeting = Greeting(chat, cast(Store, None), lambda _user: [])
    members: list[_Member] = []
    snapshots = pages = 0
    counts: list[tuple[int, int] | None] = [None]

    def fan_out(outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, Broadcast) and out.event.type == "presence-diff":
                if "total" in out.event.data:
                    diff = WindowedDiff(out.event.data, chat.presence.order.key_of)
                    diff.send(cast(Any, members), chat.presence, diff.counts != counts[0])
                    counts[0] = diff.counts
                else:
                    size = len(encode_event(out.event).json)
                    for m in members:
                        m.nbytes += size

    for i in range(n):
        user = Identity(f"u_{(i * 2654435761) % 2**64:016x}", f"User {i}")  # in no order
        peer = Peer(f"p_{i:016x}", user.user_id, user.user_name, "ws")
        fan_out(chat.connect(peer, now))
        members.append(_Member(peer.peer_id, user))
        frame = greeting.presence(peer)
        snapshots += len(frame.json)
        snapshot = orjson.loads(frame.json)["data"]
        cursor = snapshot.get("cursor") if page_all else None
        while cursor is not None:
            out = chat.receive(user, peer.peer_id, PresencePage(cursor), now)
            page: dict[str, Any] = cast(Reply, out[0]).event.data
            pages += len(orjson.dumps({"type": "presence-page", "data": page}))
            cursor = page["cursor"]
        if i % per_batch == per_batch - 1:
            now += 1.0
            fan_out(chat.tick(now))
    now += 1.0
    fan_out(chat.tick(now))
    return snapshots, pages, sum(m.nbytes for m in members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--max", type=int, default=200, help="LASTRA_PRESENCE_SNAPSHOT_MAX")
    parser.add_argument("--per-batch", type=int, default=50, help="joins per presence batch")
    args = parser.parse_args()
    cases = (
        ("whole list (before paging)", args.n + 1, False),
        (f"max {args.max}, every client pages to the end", args.max, True),
        (f"max {args.max}, clients keep their first page", args.max, False),
    )
    for label, limit, page_all in cases:
        snap, paged, diffs = crowd(args.n, limit, args.per_batch, page_all)
        print(
            f"N={args.n} {label}: snapshots {snap / 1e6:.1f} MB "
            f"({snap / args.n / 1e3:.1f} KB per join), pages {paged / 1e6:.1f} MB, "
            f"diffs {diffs / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
