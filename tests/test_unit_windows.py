"""A large room's diffs cut per tab (app.hub.windows), in process: no sockets.

The point of join order (app.core.joinorder): a crowd joining lands past every
tab's part of the list, so a tab that keeps its first page gets counts, not the
crowd's entries, however many join.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from app.core import Broadcast, Chat, ChatConfig, Identity, Peer
from app.hub.connection import Connection
from app.hub.windows import WindowedDiff
from app.wire import Frame


class Member:
    def __init__(self, peer: Peer) -> None:
        self.peer_id = peer.peer_id
        self.identity = Identity(peer.user_id, peer.user_name)
        self.frames: list[dict[str, Any]] = []

    def push(self, frame: Frame) -> None:
        self.frames.append(orjson.loads(frame.json)["data"])


def crowd(n: int, held: str) -> tuple[Chat, list[Member]]:
    """``n`` users join one by one; from the 6th each keeps its first page ("page") or not."""
    now = 0.0
    chat = Chat(ChatConfig(presence_batch=0.0, presence_batch_large=0.0, presence_snapshot_max=5))
    members: list[Member] = []
    counts: list[Any] = [None]
    for i in range(n):
        # userIds in no particular order: random-looking, as real ones are
        peer = Peer(f"p{i}", f"u_{(i * 7919) % 1009:04d}", f"User{i}", "ws")
        outputs = chat.connect(peer, now)
        members.append(Member(peer))
        if held == "page" and len(chat.presence.users) > 5:  # as the greeting does
            _ids, cursor = chat.presence.order.after(None, 5)
            chat.presence.hold(peer.peer_id, cursor)
        for out in outputs:
            if isinstance(out, Broadcast) and "total" in out.event.data:
                diff = WindowedDiff(out.event.data, chat.presence.order.key_of)
                diff.send(cast(list[Connection], members), chat.presence, diff.counts != counts[0])
                counts[0] = diff.counts
        now += 1.0
    return chat, members


def test_a_first_page_holder_hears_counts_and_itself_not_the_crowd() -> None:
    _chat, members = crowd(300, "page")
    me = members[10]
    frames = me.frames
    assert len(frames) > 250  # a diff per join: each carried the new counts
    others = [
        u["userId"] for d in frames for u in d["upsert"] if u["userId"] != me.identity.user_id
    ]
    assert others == [] and all(d["remove"] == [] for d in frames), frames[:3]
    assert me.identity.user_id in {u["userId"] for u in frames[0]["upsert"]}  # its own arrival
    assert frames[-1]["total"] == 300 and frames[-1]["online"] == 300


def test_whole_list_holders_hear_every_join() -> None:
    _chat, members = crowd(300, "all")
    joined = {u["userId"] for d in members[10].frames for u in d["upsert"]}
    assert len(joined) == 300 - 10  # itself and everyone after it
