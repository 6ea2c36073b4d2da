"""Bytes of presence a crowd of N joins costs, with and without the partial snapshot.

In-process (the core and the hub's greeting builder, no sockets), so it runs in a
second and needs no quiet machine::

    python -m bench.presence_bytes --n 1000 [--max 200]

N users join one after another, a presence batch every ``--per-batch`` joins.
Printed per setting: the bytes of every newcomer's ``presence`` snapshot (what the
connect path writes), and the bytes of the ``presence-page`` replies if every client
then pages the whole list (what the bundled client does, off the connect path).
"""

from __future__ import annotations

import argparse
from typing import Any, cast

import orjson

from app.backends.base import Store
from app.core import Chat, ChatConfig, Identity, Peer, Reply
from app.core.messages import PresencePage
from app.core.ratelimit import Rate
from app.hub.greeting import Greeting


def crowd(n: int, snapshot_max: int, per_batch: int) -> tuple[int, int]:
    """(snapshot bytes, paging bytes) for ``n`` users joining one by one."""
    now = 0.0
    unlimited = Rate(1e9, 1e9)
    config = ChatConfig(presence_snapshot_max=snapshot_max, rate_other=unlimited)
    chat = Chat(config, clock=lambda: now)
    greeting = Greeting(chat, cast(Store, None), lambda _user: [])
    snapshots = pages = 0
    for i in range(n):
        user = Identity(f"u_{i:016x}", f"User {i}")
        chat.connect(Peer(f"p_{i:016x}", user.user_id, user.user_name, "ws"), now)
        frame = greeting.presence(user.user_id)
        snapshots += len(frame.json)
        snapshot = orjson.loads(frame.json)["data"]
        cursor = snapshot.get("cursor")
        while cursor is not None:
            out = chat.receive(user, None, PresencePage(cursor), now)
            page: dict[str, Any] = cast(Reply, out[0]).event.data
            pages += len(orjson.dumps({"type": "presence-page", "data": page}))
            cursor = page["cursor"]
        if i % per_batch == per_batch - 1:
            now += 1.0
            chat.tick(now)
    return snapshots, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--max", type=int, default=200, help="LASTRA_PRESENCE_SNAPSHOT_MAX")
    parser.add_argument("--per-batch", type=int, default=50, help="joins per presence batch")
    args = parser.parse_args()
    for label, limit in (("whole list (before)", args.n + 1), (f"max {args.max}", args.max)):
        snap, paged = crowd(args.n, limit, args.per_batch)
        print(
            f"N={args.n} {label}: snapshots {snap / 1e6:.1f} MB "
            f"({snap / args.n / 1e3:.1f} KB per join), paging the rest {paged / 1e6:.1f} MB"
        )


if __name__ == "__main__":
    main()
