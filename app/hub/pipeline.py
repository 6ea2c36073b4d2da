"""The durable pipeline: drafts → store → ``Chat.committed`` → the hub, in ``seq`` order.

One task appends drafts in batches (up to 512 per store call) and carries out
each commit's outputs in order, so every client sees durable events in one
order and an ack is sent only after the store answered.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, cast

from app.backends.base import Committed
from app.core import ClientError, Draft

from .requests import Origin, Waiter

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Pipeline"]

log = logging.getLogger("lastra.hub")


class Pipeline:
    """The queue of drafts waiting for the store, and the task that drains it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.drafts: asyncio.Queue[Draft] = asyncio.Queue()

    async def run(self) -> None:
        """Append drafts in batches, then carry out their commits in seq order."""
        hub = self.hub
        while True:
            first = await self.drafts.get()
            batch = [first]
            while not self.drafts.empty() and len(batch) < 512:
                batch.append(self.drafts.get_nowait())
            try:
                results = await hub.store.append(batch)
            except Exception:
                trace = uuid.uuid4().hex[:12]
                log.exception("store append failed (trace %s); nothing was acked", trace)
                for draft in batch:
                    err = ClientError(
                        "internal", f"could not store the message ({trace})", draft.ref
                    )
                    hub.fail(cast(Origin, draft.origin), err)
            else:
                for draft, result in zip(batch, results, strict=True):
                    self._commit(draft, result)
            for _ in batch:
                self.drafts.task_done()

    def _commit(self, draft: Draft, result: Committed) -> None:
        hub = self.hub
        origin = cast(Origin, draft.origin)
        if hub.bots is not None and result.first_id is None:
            if draft.type == "chat":
                hub.bots.on_chat(draft.event(result.seq).data)
            elif draft.type == "clear":
                hub.bots.on_clear()
        outputs = hub.core.committed(draft, result.seq, result.first_id)
        hub.carry_out(outputs, origin, result.record)
        if isinstance(origin, Waiter):
            origin.done()
