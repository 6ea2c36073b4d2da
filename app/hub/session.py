"""One live connection, from attach to detach, written once for every transport.

    async with Session(hub, conn, kill, last_seq, epoch) as session:
        session.client_code = await read_frames()   # or: await the stream's end

On entry the connection is attached (greeting queued) and given an abort: a
client that stopped reading is let go of (detached: no ghost in presence)
``ABORT_AFTER`` seconds after a 4409/4408 close, and ``kill`` (the transport's way
to drop the socket or cancel its task) runs ``KILL_AFTER`` seconds later. On
exit, however it ends, the abort is disarmed and the connection detached with
the client's close code, if it sent one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from .connection import Connection

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Session"]

log = logging.getLogger("lastra.hub")


class Session:
    """``async with``: attach and arm the abort; detach on the way out."""

    __slots__ = ("client_code", "conn", "epoch", "hub", "kill", "last_seq", "swallow_kill")

    def __init__(
        self,
        hub: Hub,
        conn: Connection,
        kill: Callable[[], object],
        last_seq: int | None = None,
        epoch: str | None = None,
        *,
        swallow_kill: bool = False,
    ) -> None:
        self.hub = hub
        self.conn = conn
        self.kill = kill
        self.last_seq = last_seq
        self.epoch = epoch
        #: ``kill`` cancels the task running this block: end quietly when it does
        self.swallow_kill = swallow_kill
        #: the client's close code, when it closed first (set by the transport)
        self.client_code: int | None = None

    def _abort(self) -> None:
        """The client stopped reading: its close is stuck in the send buffer. Let go of it."""
        conn = self.conn
        log.info("letting go of stalled connection %s (%s)", conn.peer_id, int(conn.close_code))
        self.hub.detach(conn)
        asyncio.get_running_loop().call_later(conn.KILL_AFTER, self.kill)

    async def __aenter__(self) -> Session:
        self.conn.on_abort = self._abort
        try:
            await self.hub.attach(self.conn, self.last_seq, self.epoch)
        except BaseException:
            self._finish()
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        quiet = self.swallow_kill and kind is asyncio.CancelledError and self.conn.closing
        self._finish()
        return quiet  # a cancellation by our own kill (the connection was closing)

    def _finish(self) -> None:
        self.conn.finished()
        self.hub.detach(self.conn, self.client_code)
